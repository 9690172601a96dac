// Auxiliary losses shared by token-choice routers (switchable on any of them).
#pragma once

#include <torch/torch.h>

namespace moelab {

// Switch Transformer load balancing: E * sum_e f_e * P_e, with f_e the fraction of the
// assignments sent to expert e (all k choices counted) and P_e the mean full-softmax
// probability of e. probs: [T, E]; counts: [E] assignments per expert (real_expert_counts).
torch::Tensor switch_balance_loss(const torch::Tensor& probs, const torch::Tensor& counts);

// ST-MoE router z-loss: mean over tokens of logsumexp(logits)^2. logits: [T, E].
torch::Tensor router_z_loss(const torch::Tensor& logits);

struct RouteResult;

struct RouteContext;

// Appends the switchable token-choice losses ("balance", "z") when their weights are > 0,
// over the real (unpadded) tokens. probs: [T, E] full softmax; logits: [T, E].
void add_token_choice_losses(RouteResult& result, const torch::Tensor& logits,
                             const torch::Tensor& probs, double aux_coef, double z_coef,
                             const RouteContext& ctx);

}  // namespace moelab
