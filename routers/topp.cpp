// Dynamic top-p routing.
#include "routers/topp.h"

#include "routers/losses.h"
#include "routers/topk.h"

namespace moelab {

void TopPOptions::check(const RouterShape& shape) const {
  check_k(static_cast<double>(min_k), shape, "router.min_k");
  check_k(static_cast<double>(max_k), shape, "router.max_k");
  if (max_k > 0 && max_k < min_k) {
    throw ConfigError::at_key("router.max_k", fmt::format("{}: must be 0 (no limit) or >= "
                                                          "router.min_k = {}",
                                                          max_k, min_k));
  }
}

torch::Tensor top_p_mask(const torch::Tensor& probs, double p, int64_t min_k, int64_t max_k) {
  auto [sorted, order] = torch::sort(probs, /*stable=*/true, /*dim=*/-1, /*descending=*/true);
  auto mass_before = sorted.cumsum(-1) - sorted;                           // [T, E]
  auto rank = torch::arange(probs.size(1), order.options()).expand_as(order);  // [T, E]
  auto taken = (mass_before < p).logical_or(rank < min_k);                // [T, E] by rank
  if (max_k > 0) taken = taken.logical_and(rank < max_k);
  return torch::zeros_like(sorted).scatter(-1, order, taken.to(sorted.dtype())) > 0;  // [T, E]
}

TopPRouter::TopPRouter(const TopPOptions& options, const RouterShape& shape)
    : LogitRouter(shape), options_(options) {}

RouteResult TopPRouter::decide(const torch::Tensor& logits, const RouteContext& ctx) {
  auto probs = torch::softmax(logits, -1);                                            // [T, E]
  auto taken = top_p_mask(probs.detach(), options_.p, options_.min_k, options_.max_k);  // [T, E]
  auto pairs = taken.nonzero();                                                       // [A, 2]
  auto gates = options_.renormalize ? probs / (probs * taken).sum(-1, true) : probs;  // [T, E]
  RouteResult result = RouteResult::from_pairs(pairs.select(1, 0), pairs.select(1, 1), gates);
  result.logits = logits;
  result.probs = probs;
  add_token_choice_losses(result, logits, probs, options_.aux_coef, options_.z_coef, ctx);
  auto real_probs = real_rows(probs, ctx);  // [T_real, E]
  if (options_.entropy_coef > 0) {
    auto entropy = -(real_probs * torch::log(real_probs.clamp_min(1e-12))).sum(-1).mean();
    result.aux_losses.emplace_back("entropy", options_.entropy_coef * entropy);
  }
  result.metrics.emplace_back(
      "k_mean", real_rows(taken.to(torch::kFloat), ctx).sum(-1).mean().detach());
  return result;
}

}  // namespace moelab
