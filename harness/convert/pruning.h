// Structured pruning of a dense FFN (docs/methods.md): the baseline that keeps the FFN dense
// and narrower instead of sparse. Each neuron's importance is the mean norm of its
// contribution to the FFN's output over calibration tokens, mean_t |GELU(x_t . w1_j + b1_j)| x
// ||w2[:, j]|| (activation magnitude weighted by the output weights); the most important
// `keep` neurons stay, with their weights unchanged.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace moelab {

// w1 [H, D], b1 [H], w2 [D, H] (torch Linear layout), inputs [N, D] -> importance [H].
torch::Tensor neuron_importance(const torch::Tensor& w1, const torch::Tensor& b1,
                                const torch::Tensor& w2, const torch::Tensor& inputs);

// The `keep` most important neurons, in ascending index order. [keep] int64
torch::Tensor kept_neurons(const torch::Tensor& importance, int64_t keep);

// Loads the kept neurons of the dense FFN (w1, b1, w2, b2) into `pruned`, a
// Sequential(Linear(D, keep), GELU, Linear(keep, D)).
void load_pruned(torch::nn::Sequential pruned, const torch::Tensor& w1, const torch::Tensor& b1,
                 const torch::Tensor& w2, const torch::Tensor& b2, const torch::Tensor& kept);

}  // namespace moelab
