// What a forward pass computes, in floating-point operations, by the counting rule of Kaplan
// et al. (2020, "Scaling laws", section 2.1) and Chinchilla: 2 per multiply-add of every matrix
// product; elementwise work (activations, norms, softmax, residuals, biases) and lookups are
// left out (under 2 % at the shapes moelab trains, and the same for every router). Attention
// counts its full L x L score and context products, causal or not, as the reference kernel
// computes them. A training step counts 3 forwards (the backward pass about twice the forward:
// kTrainingFactor). Routers' own work beyond their linear maps (a Sinkhorn solve's iterations)
// is counted by the router (RouteResult::solver_flops); the MoE layer counts the experts the
// tokens actually used (after capacity drops; null experts are free). docs/methods.md
// "Compute accounting" states the rule and what it leaves out.
#pragma once

#include <cstdint>

namespace moelab {

inline constexpr double kTrainingFactor = 3.0;  // forward + backward (twice the forward)

// rows x [in -> out]: one matrix product.
inline double linear_flops(int64_t rows, int64_t in, int64_t out) {
  return 2.0 * static_cast<double>(rows) * static_cast<double>(in) * static_cast<double>(out);
}

// A two-layer FFN in -> hidden -> in on `rows` tokens.
inline double ffn_flops(int64_t rows, int64_t dim, int64_t hidden) {
  return 2.0 * linear_flops(rows, dim, hidden);
}

// Multi-head self-attention on `sequences` of `length` tokens of width `dim`: the q, k, v
// projection [dim -> 3 dim], the scores q k^T and the context p v (each length x length x dim
// per sequence, over all heads), and the output projection [dim -> dim].
inline double attention_flops(int64_t sequences, int64_t length, int64_t dim) {
  const int64_t tokens = sequences * length;
  const double scores = linear_flops(sequences * length, dim, length);  // q k^T, all heads
  return linear_flops(tokens, dim, 3 * dim) + 2.0 * scores + linear_flops(tokens, dim, dim);
}

}  // namespace moelab
