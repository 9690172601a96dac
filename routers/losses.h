// Auxiliary losses shared by token-choice routers (switchable on any of them), and the
// selection-bias bookkeeping of the bias-balanced routers (loss_free, deepseek_v3).
#pragma once

#include <functional>

#include <torch/torch.h>

namespace moelab {

// Switch Transformer load balancing: E * sum_e f_e * P_e, with f_e the fraction of the
// assignments sent to expert e (all k choices counted) and P_e the mean full-softmax
// probability of e. probs: [T, E]; counts: [E] assignments per expert (real_expert_counts).
torch::Tensor switch_balance_loss(const torch::Tensor& probs, const torch::Tensor& counts);

// SimBal's orthogonality loss || W W^T - I ||_1 (sum of absolute entries) of a gate W [E, D].
torch::Tensor orthogonality_loss(const torch::Tensor& gate_weight);

// ST-MoE router z-loss: mean over tokens of logsumexp(logits)^2. logits: [T, E].
torch::Tensor router_z_loss(const torch::Tensor& logits);

struct RouteResult;

struct RouteContext;

// Sequence-wise balance: the mean over the sequences (ctx.group_size tokens each; all T when
// 0) of E * sum_e f_e P_e, f_e the share of the sequence's real assignments that went to e
// and P_e the mean of probs[:, e] over its real tokens; sequences of padding only are left
// out. probs: [T, E] rows summing to 1.
torch::Tensor sequence_balance_loss(const torch::Tensor& probs, const RouteResult& result,
                                    const RouteContext& ctx);

// Appends the switchable token-choice losses ("balance", "z") when their weights are > 0,
// over the real (unpadded) tokens. probs: [T, E] full softmax; logits: [T, E]. The balance
// loss counts frequencies per ctx.balance_scope: this micro-batch, every micro-batch of the
// step so far (ctx.step_counts, updated here), or each sequence (sequence_balance_loss).
void add_token_choice_losses(RouteResult& result, const torch::Tensor& logits,
                             const torch::Tensor& probs, double aux_coef, double z_coef,
                             const RouteContext& ctx);

// In training, adds this forward's real assignments per expert to `counts` [E].
void count_assignments(torch::Tensor& counts, const RouteResult& result, const RouteContext& ctx);

// After an optimizer step: bias += rate * sign(mean(counts) - counts), then counts = 0 (a
// step without training forwards leaves the bias alone).
void move_selection_bias(torch::Tensor& bias, torch::Tensor& counts, double rate);

// The metrics of a selection bias [E]: bias_abs_max and bias_norm (L2), and where metrics are
// collected, bias_override_frac: the share of the real tokens' chosen experts `chosen` [T, k]
// that the top-k of the unbiased scores, `unbiased()` [T, k], would not have chosen.
void add_bias_metrics(RouteResult& result, const torch::Tensor& bias, const torch::Tensor& chosen,
                      const std::function<torch::Tensor()>& unbiased, const RouteContext& ctx);

}  // namespace moelab
