// Softmax top-k token-choice router.
#include "routers/topk.h"

#include "routers/losses.h"

namespace moelab {

void check_k(double k, const RouterShape& shape, const char* key) {
  if (k > static_cast<double>(shape.experts)) {
    throw ConfigError::at_key(key, fmt::format("{}: must be <= model.moe.experts = {}", k,
                                               shape.experts));
  }
}

void TopKOptions::check(const RouterShape& shape) const { check_k(k, shape); }

torch::Tensor chosen_softmax(const torch::Tensor& scores, const torch::Tensor& indices) {
  if (indices.size(1) == 1) return torch::softmax(scores, -1).gather(1, indices);  // [T, 1]
  return torch::softmax(scores.gather(1, indices), -1);                            // [T, k]
}

std::pair<torch::Tensor, torch::Tensor> softmax_topk(const torch::Tensor& logits, int64_t k,
                                                     const std::string& softmax, bool renormalize) {
  if (softmax == "after" || k == 1) {
    auto indices = std::get<1>(torch::topk(logits, k, -1));  // [T, k]
    return {indices, chosen_softmax(logits, indices)};
  }
  auto [top_probs, indices] = torch::topk(torch::softmax(logits, -1), k, -1);  // [T, k]
  return {indices, renormalize ? top_probs / top_probs.sum(-1, true) : top_probs};
}

TopKRouter::TopKRouter(const TopKOptions& options, const RouterShape& shape)
    : LogitRouter(shape), options_(options) {}

RouteResult TopKRouter::decide(const torch::Tensor& logits, const RouteContext& ctx) {
  auto [indices, gates] = softmax_topk(logits, options_.k, options_.softmax, options_.renormalize);
  RouteResult result = RouteResult::from_topk(indices, gates);
  result.logits = logits;
  result.probs = torch::softmax(logits, -1);  // [T, E]
  add_token_choice_losses(result, logits, result.probs, options_.aux_coef, options_.z_coef, ctx);
  return result;
}

}  // namespace moelab
