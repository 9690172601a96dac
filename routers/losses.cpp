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

torch::Tensor orthogonality_loss(const torch::Tensor& gate_weight) {
  const int64_t experts = gate_weight.size(0);
  auto gram = gate_weight.mm(gate_weight.t());                                    // [E, E]
  return (gram - torch::eye(experts, gram.options())).abs().sum();
}

torch::Tensor router_z_loss(const torch::Tensor& logits) {
  return torch::logsumexp(logits, -1).pow(2).mean();
}

torch::Tensor sequence_balance_loss(const torch::Tensor& probs, const RouteResult& result,
                                    const RouteContext& ctx) {
  const int64_t tokens = probs.size(0), experts = probs.size(1);
  const int64_t length = ctx.group_size > 0 ? ctx.group_size : tokens;
  const int64_t sequences = tokens / length;
  auto real = real_token_column(tokens, ctx, probs.options());                 // [T, 1]
  auto chosen = torch::zeros({tokens, experts}, probs.options())
                    .index_put_({result.token, result.expert},
                                torch::ones({result.token.numel()}, probs.options()),
                                /*accumulate=*/true) * real;                   // [T, E]
  auto counts = chosen.view({sequences, length, experts}).sum(1);              // [S, E]
  auto share = counts / counts.sum(-1, true).clamp_min(1.0);                   // [S, E]
  auto real_tokens = real.view({sequences, length}).sum(1, true);              // [S, 1]
  auto mean_prob = (probs * real).view({sequences, length, experts}).sum(1) /
                   real_tokens.clamp_min(1.0);                                 // [S, E]
  auto has_tokens = (real_tokens.squeeze(1) > 0).to(probs.dtype());            // [S]
  auto per_sequence = static_cast<double>(experts) * (share * mean_prob).sum(-1);  // [S]
  return (per_sequence * has_tokens).sum() / has_tokens.sum().clamp_min(1.0);
}

namespace {

torch::Tensor balance_loss(const RouteResult& result, const torch::Tensor& probs,
                           const RouteContext& ctx) {
  if (ctx.balance_scope == BalanceScope::Sequence) return sequence_balance_loss(probs, result, ctx);
  auto counts = real_expert_counts(result, probs.size(1), ctx);  // [E]
  if (ctx.balance_scope == BalanceScope::GlobalBatch && ctx.step_counts != nullptr) {
    torch::Tensor& step = (*ctx.step_counts)[ctx.layer];
    step = step.defined() ? step + counts.detach() : counts.detach();
    counts = step;
  }
  return switch_balance_loss(real_rows(probs, ctx), counts);
}

}  // namespace

void add_token_choice_losses(RouteResult& result, const torch::Tensor& logits,
                             const torch::Tensor& probs, double aux_coef, double z_coef,
                             const RouteContext& ctx) {
  if (aux_coef > 0) result.aux_losses.emplace_back("balance", aux_coef * balance_loss(result, probs, ctx));
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

void add_bias_metrics(RouteResult& result, const torch::Tensor& bias, const torch::Tensor& chosen,
                      const std::function<torch::Tensor()>& unbiased, const RouteContext& ctx) {
  result.metrics.emplace_back("bias_abs_max", bias.abs().max().detach());
  result.metrics.emplace_back("bias_norm", bias.norm().detach());
  if (!ctx.collect_metrics) return;
  torch::NoGradGuard no_grad;
  const auto biased = real_rows(chosen, ctx).unsqueeze(2);       // [T, k, 1]
  const auto plain = real_rows(unbiased(), ctx).unsqueeze(1);    // [T, 1, k]
  const auto kept = (biased == plain).any(2).to(torch::kFloat);  // [T, k] also chosen unbiased
  result.metrics.emplace_back("bias_override_frac", 1.0 - kept.mean());
}

}  // namespace moelab
