// Switch balance loss and ST-MoE z-loss.
#include "routers/losses.h"

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

}  // namespace moelab
