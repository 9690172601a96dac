// Structured pruning: neuron importance, the kept set, and the narrower FFN's weights.
#include "harness/convert/pruning.h"

#include "harness/core/error.h"

namespace moelab {

torch::Tensor neuron_importance(const torch::Tensor& w1, const torch::Tensor& b1,
                                const torch::Tensor& w2, const torch::Tensor& inputs) {
  torch::NoGradGuard no_grad;
  auto hidden = torch::gelu(torch::addmm(b1, inputs.to(w1.device()), w1.t()));  // [N, H]
  return hidden.abs().mean(0) * w2.norm(2, 0);                                  // [H]
}

torch::Tensor kept_neurons(const torch::Tensor& importance, int64_t keep) {
  MOELAB_CHECK(keep >= 1 && keep <= importance.numel(), "pruning: keep {} of {} neurons", keep,
               importance.numel());
  auto top = std::get<1>(importance.topk(keep));  // [keep]
  return std::get<0>(top.sort());
}

void load_pruned(torch::nn::Sequential pruned, const torch::Tensor& w1, const torch::Tensor& b1,
                 const torch::Tensor& w2, const torch::Tensor& b2, const torch::Tensor& kept) {
  auto first = pruned->ptr<torch::nn::LinearImpl>(0), second = pruned->ptr<torch::nn::LinearImpl>(2);
  MOELAB_CHECK(first->weight.size(0) == kept.numel(), "load_pruned: an FFN of {} neurons for {} kept",
               first->weight.size(0), kept.numel());
  torch::NoGradGuard no_grad;
  const auto index = kept.to(w1.device());
  first->weight.copy_(w1.index_select(0, index));   // [keep, D]
  first->bias.copy_(b1.index_select(0, index));     // [keep]
  second->weight.copy_(w2.index_select(1, index));  // [D, keep]
  second->bias.copy_(b2);
}

}  // namespace moelab
