// Switch balance loss and ST-MoE z-loss.
#include "routers/losses.h"

#include "routers/router.h"

namespace moelab {

torch::Tensor switch_balance_loss(const torch::Tensor& probs, const torch::Tensor& counts) {
  const int64_t experts = probs.size(1);
  auto fraction = counts.to(probs.scalar_type()) / counts.sum().clamp_min(1.0);  // [E]
  auto mean_prob = probs.mean(0);                                               // [E]
  return experts * (fraction * mean_prob).sum();
}

torch::Tensor router_z_loss(const torch::Tensor& logits) {
  return torch::logsumexp(logits, -1).pow(2).mean();
}

void add_token_choice_losses(RouteResult& result, const torch::Tensor& logits,
                             const torch::Tensor& probs, double aux_coef, double z_coef,
                             const RouteContext& ctx) {
  if (aux_coef > 0) {
    auto counts = real_expert_counts(result, probs.size(1), ctx);  // [E]
    result.aux_losses.emplace_back("balance",
                                   aux_coef * switch_balance_loss(real_rows(probs, ctx), counts));
  }
  if (z_coef > 0) result.aux_losses.emplace_back("z", z_coef * router_z_loss(real_rows(logits, ctx)));
}

}  // namespace moelab
