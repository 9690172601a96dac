// Multi-head scaled dot-product attention on packed projections, in two implementations
// (reference, then fast): `attention_reference` with LibTorch operators (materialised scores,
// softmax, two batched matmuls; any device, dtype and dropout), and `attention_fused`, a CPU
// kernel that computes each (sequence, head) pair's scores, softmax and weighted values in
// one pass over small buffers, with its own backward. `attention` chooses between them.
#pragma once

#include <ATen/ATen.h>

namespace moelab {

// qkv: [B, L, 3 * D] (queries, keys, values, each H heads of D / H) -> [B, L, D].
// Scores are scaled by 1 / sqrt(D / H); causal masks every key after the query's position.
at::Tensor attention_reference(const at::Tensor& qkv, int64_t heads, bool causal,
                               double dropout, bool training);

// The same without dropout, for contiguous float or double tensors on the CPU. Each (b, h)
// pair is computed on one thread in a fixed order, so results do not depend on the thread
// count. Differentiable once: a backward with create_graph throws. Without a gradient to
// compute (no grad mode, or qkv not requiring one) the probabilities are not kept.
at::Tensor attention_fused(const at::Tensor& qkv, int64_t heads, bool causal);

// attention_fused where it applies (CPU, float or double, no active dropout), else the
// reference.
at::Tensor attention(const at::Tensor& qkv, int64_t heads, bool causal, double dropout,
                     bool training);

}  // namespace moelab
