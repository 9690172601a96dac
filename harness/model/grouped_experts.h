// The experts' FFNs (GELU MLPs) over their contiguous slices of the dispatched tokens, in two
// implementations (reference, then fast): `experts_reference` is a loop of LibTorch operators
// per expert (any device), `experts_parallel` one autograd node whose forward and backward
// run the experts side by side over LibTorch's threads, each expert's matmuls on one thread.
// The per-expert matmuls are too small for a multi-threaded BLAS (moelab keeps it at one
// thread beside LibTorch's pool), so the reference runs every expert on one core while the
// others wait.
#pragma once

#include <ATen/ATen.h>

#include <vector>

namespace moelab {

// The experts' parameters: [E, D, H], [E, H], [E, H, D], [E, D].
struct ExpertWeights {
  at::Tensor w_in, b_in, w_out, b_out;
};

// inputs: [A', D] rows sorted by expert, rows_per_expert[e] of them for expert e ->
// [A', D], row r = expert(r)'s FFN of input row r.
at::Tensor experts_reference(const at::Tensor& inputs, const ExpertWeights& experts,
                             const std::vector<int64_t>& rows_per_expert);

// The same for CPU tensors: the reference's operators per expert, so the same values and
// gradients (bit for bit where the reference's bias-gradient sums are too small for ATen to
// split over threads, as in the tests), and the same on any thread count. Differentiable once:
// a backward with create_graph throws.
at::Tensor experts_parallel(const at::Tensor& inputs, const ExpertWeights& experts,
                            const std::vector<int64_t>& rows_per_expert);

// experts_parallel on the CPU, else the reference.
at::Tensor run_experts(const at::Tensor& inputs, const ExpertWeights& experts,
                       const std::vector<int64_t>& rows_per_expert);

}  // namespace moelab
