// Switch balance loss, ST-MoE z-loss and the selection-bias bookkeeping.
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

void count_assignments(torch::Tensor& counts, const RouteResult& result, const RouteContext& ctx) {
  if (!ctx.training) return;
  torch::NoGradGuard no_grad;
  counts += real_expert_counts(result, counts.size(0), ctx).to(counts.options());
}

void move_selection_bias(torch::Tensor& bias, torch::Tensor& counts, double rate) {
  torch::NoGradGuard no_grad;
  bias += rate * torch::sign(counts.mean() - counts);
  counts.zero_();
}

void add_bias_metrics(RouteResult& result, const torch::Tensor& bias) {
  result.metrics.emplace_back("bias_abs_max", bias.abs().max().detach());
  result.metrics.emplace_back("bias_norm", bias.norm().detach());
}

}  // namespace moelab
