// Neuron -> expert splits: how a dense FFN's H hidden neurons become E experts of exactly
// s = H / E neurons each (MoEfication heuristics and DOT-MoE, docs/methods.md). A split is
// an assignment [H] int64 (expert of each neuron) or its one-hot matrix [H, E].
#pragma once

#include <torch/torch.h>

#include <string>

namespace moelab {

// Greedy rounding (§5.3): walk the entries of `scores` [N, E] from the largest down (ties in
// row-major order); neuron i takes expert e if i is still unplaced and e has fewer than
// `capacity` neurons. Needs N <= capacity * E. Returns [N] int64.
torch::Tensor greedy_round(const torch::Tensor& scores, int64_t capacity);

// A uniformly random balanced split of N neurons into `experts` groups of N / experts.
torch::Tensor random_split(int64_t neurons, int64_t experts, uint64_t seed);

// Balanced k-means of the rows of `points` [N, F] into `clusters` groups of exactly
// N / clusters: centroids start at distinct random rows; each assignment step is the greedy
// rounding of the negative squared distances. Stops when the assignment repeats or after
// `max_iters`. Returns [N] int64.
torch::Tensor balanced_kmeans(const torch::Tensor& points, int64_t clusters, int64_t max_iters,
                              uint64_t seed);

// [N] int64 -> [N, E] float one-hot.
torch::Tensor split_matrix(const torch::Tensor& assignment, int64_t experts);

// The neurons ordered by expert (stable inside an expert): the permutation that lays the
// split out as E contiguous blocks of s neurons. [N] int64.
torch::Tensor expert_major_order(const torch::Tensor& assignment);

// Throws Error naming `what` unless every neuron has an expert in [0, E) and every expert
// has exactly N / E neurons.
void check_balanced(const torch::Tensor& assignment, int64_t experts, const std::string& what);

// DOT-MoE's differentiable split of learnable affinities A [H, E] (§5.2-5.3): the entropic
// balanced transport plan of A / tau (rows 1, columns H / E; the shared log-domain Sinkhorn,
// its duals held fixed in the backward pass or, with `unrolled`, differentiated through the
// iterations), greedily rounded to a hard split; `ste` is the straight-through matrix
// hard + (soft - stopgrad soft) [H, E].
struct LearnedSplit {
  torch::Tensor soft;        // [H, E], differentiable in A
  torch::Tensor assignment;  // [H] int64, the hard split
  torch::Tensor ste;         // [H, E]
  int64_t iterations = 0;    // Sinkhorn iterations used
  double error = 0.0;        // final relative column-marginal error
};
LearnedSplit learned_split(const torch::Tensor& affinity, double tau, int64_t max_iters,
                           bool unrolled = false);

}  // namespace moelab
