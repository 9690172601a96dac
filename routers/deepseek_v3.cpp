// DeepSeek-V3 routing: sigmoid affinities, a selection-only bias, normalised gates,
// group-limited top-k and the sequence-wise balance loss.
#include "routers/deepseek_v3.h"

#include <limits>

#include "routers/losses.h"
#include "routers/topk.h"

namespace moelab {

void DeepSeekV3Options::check(const RouterShape& shape) const {
  check_k(static_cast<double>(k), shape);
  if (shape.experts % groups != 0) {
    throw ConfigError::at_key("router.groups", fmt::format("{}: must divide model.moe.experts = {}",
                                                           groups, shape.experts));
  }
  if (topk_groups > groups) {
    throw ConfigError::at_key("router.topk_groups", fmt::format("{}: must be <= router.groups = {}",
                                                                topk_groups, groups));
  }
  const int64_t reachable = topk_groups * (shape.experts / groups);
  if (groups > 1 && k > reachable) {
    throw ConfigError::at_key("router.k", fmt::format("{}: more than the {} experts of "
                                                      "router.topk_groups = {} groups",
                                                      k, reachable, topk_groups));
  }
}

torch::Tensor group_limited_topk(const torch::Tensor& biased, int64_t k, int64_t groups,
                                 int64_t topk_groups) {
  if (groups > 1) {
    const int64_t tokens = biased.size(0), per_group = biased.size(1) / groups;
    auto grouped = biased.view({tokens, groups, per_group});                          // [T, G, E/G]
    auto group_scores =
        std::get<0>(grouped.topk(std::min<int64_t>(2, per_group), -1)).sum(-1);     // [T, G]
    auto best_groups = std::get<1>(group_scores.topk(topk_groups, -1));             // [T, tg]
    auto allowed = torch::zeros_like(group_scores).scatter(1, best_groups, 1.0);     // [T, G]
    auto expert_allowed = allowed.unsqueeze(-1).expand({tokens, groups, per_group})
                              .reshape({tokens, -1});                                // [T, E]
    return std::get<1>(biased.masked_fill(expert_allowed == 0,
                                          -std::numeric_limits<float>::infinity())
                           .topk(k, -1));                                            // [T, k]
  }
  return std::get<1>(biased.topk(k, -1));                                            // [T, k]
}

DeepSeekV3Router::DeepSeekV3Router(const DeepSeekV3Options& options, const RouterShape& shape)
    : LogitRouter(shape), options_(options) {
  bias_ = register_buffer("selection_bias", torch::zeros({shape.experts}));
  step_counts_ = register_buffer("step_counts", torch::zeros({shape.experts}));
}

RouteResult DeepSeekV3Router::decide(const torch::Tensor& logits, const RouteContext& ctx) {
  auto scores = options_.score == "sqrtsoftplus" ? torch::sqrt(torch::softplus(logits))
                                                 : torch::sigmoid(logits);          // [T, E]
  auto indices = group_limited_topk(scores.detach() + bias_.to(scores.device()), options_.k,
                                    options_.groups, options_.topk_groups);          // [T, k]
  auto chosen = scores.gather(1, indices);                                           // [T, k]
  // k = 1 keeps the affinity itself: one normalised gate is the constant 1 (no gradient).
  auto gates = (options_.k > 1 ? chosen / chosen.sum(-1, true) : chosen) * options_.scale;  // [T, k]
  RouteResult result = RouteResult::from_topk(indices, gates);
  result.logits = logits;
  result.probs = scores / scores.sum(-1, true);  // normalised affinities (gate entropy)
  count_assignments(step_counts_, result, ctx);
  if (options_.alpha > 0) {  // f_e = E / (k L) x count: every real token takes k experts
    result.aux_losses.emplace_back(
        "seq_balance", options_.alpha * sequence_balance_loss(result.probs, result, ctx));
  }
  add_token_choice_losses(result, logits, result.probs, 0.0, options_.z_coef, ctx);
  add_bias_metrics(result, bias_, indices, [&] {
    return group_limited_topk(scores.detach(), options_.k, options_.groups, options_.topk_groups);
  }, ctx);
  return result;
}

void DeepSeekV3Router::on_step_end(int64_t /*step*/) {
  move_selection_bias(bias_, step_counts_, options_.gamma);
}

}  // namespace moelab
