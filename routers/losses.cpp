// Switch balance loss and ST-MoE z-loss.
#include "routers/losses.h"

#include "routers/router.h"

namespace moelab {

torch::Tensor switch_balance_loss(const torch::Tensor& probs, const torch::Tensor& expert) {
  const int64_t experts = probs.size(1);
  auto counts = torch::bincount(expert, /*weights=*/{}, experts).to(probs.scalar_type());  // [E]
  auto fraction = counts / std::max<int64_t>(expert.numel(), 1);                         // [E]
  auto mean_prob = probs.mean(0);                                                         // [E]
  return experts * (fraction * mean_prob).sum();
}

torch::Tensor router_z_loss(const torch::Tensor& logits) {
  return torch::logsumexp(logits, -1).pow(2).mean();
}

void add_token_choice_losses(RouteResult& result, const torch::Tensor& logits,
                             const torch::Tensor& probs, double aux_coef, double z_coef,
                             const RouteContext& ctx) {
  if (aux_coef > 0) {
    auto expert = result.expert.masked_select(real_assignments(result.token, ctx));  // [A_real]
    result.aux_losses.emplace_back(
        "balance", aux_coef * switch_balance_loss(real_rows(probs, ctx), expert));
  }
  if (z_coef > 0) result.aux_losses.emplace_back("z", z_coef * router_z_loss(real_rows(logits, ctx)));
}

}  // namespace moelab
