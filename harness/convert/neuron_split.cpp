// Neuron splits: greedy rounding, random and balanced k-means splits, DOT-MoE's transport.
#include "harness/convert/neuron_split.h"

#include <fmt/format.h>

#include <cmath>
#include <vector>

#include "harness/core/error.h"
#include "harness/core/rng.h"
#include "routers/sinkhorn.h"

namespace moelab {

torch::Tensor greedy_round(const torch::Tensor& scores, int64_t capacity) {
  MOELAB_CHECK(scores.dim() == 2, "greedy_round: scores must be [N, E]");
  const int64_t neurons = scores.size(0), experts = scores.size(1);
  MOELAB_CHECK(neurons <= capacity * experts,
               "greedy_round: {} neurons do not fit {} experts of capacity {}", neurons, experts,
               capacity);
  auto flat = scores.detach().to(torch::kCPU, torch::kFloat).reshape({-1}).contiguous();
  auto order = std::get<1>(torch::sort(flat, /*stable=*/true, 0, /*descending=*/true));
  const auto* entry = order.data_ptr<int64_t>();
  std::vector<int64_t> assignment(neurons, -1), load(experts, 0);
  int64_t placed = 0;
  for (int64_t i = 0; i < flat.numel() && placed < neurons; ++i) {
    const int64_t neuron = entry[i] / experts, expert = entry[i] % experts;
    if (assignment[neuron] >= 0 || load[expert] >= capacity) continue;
    assignment[neuron] = expert;
    ++load[expert];
    ++placed;
  }
  return torch::tensor(assignment, torch::kLong);
}

torch::Tensor random_split(int64_t neurons, int64_t experts, uint64_t seed) {
  MOELAB_CHECK(experts > 0 && neurons % experts == 0,
               "random_split: {} neurons do not split into {} equal experts", neurons, experts);
  Rng rng(seed);
  std::vector<int64_t> slot(neurons);
  for (int64_t i = 0; i < neurons; ++i) slot[i] = i / (neurons / experts);
  for (int64_t i = neurons - 1; i > 0; --i) std::swap(slot[i], slot[rng.below(i + 1)]);
  return torch::tensor(slot, torch::kLong);
}

torch::Tensor balanced_kmeans(const torch::Tensor& points_in, int64_t clusters, int64_t max_iters,
                              uint64_t seed) {
  const int64_t count = points_in.size(0);
  MOELAB_CHECK(clusters > 0 && count % clusters == 0,
               "balanced_kmeans: {} points do not split into {} equal clusters", count, clusters);
  auto points = points_in.detach().to(torch::kCPU, torch::kFloat);  // [N, F]
  const int64_t size = count / clusters;
  // Initial centroids: `clusters` distinct rows drawn by a seeded shuffle.
  auto first = expert_major_order(random_split(count, count, seed)).narrow(0, 0, clusters);
  auto centroids = points.index_select(0, first);  // [E, F]
  auto squared = points.pow(2).sum(1, true);       // [N, 1]
  torch::Tensor assignment;
  for (int64_t it = 0; it < std::max<int64_t>(max_iters, 1); ++it) {
    auto distance = squared - 2 * points.mm(centroids.t()) + centroids.pow(2).sum(1);  // [N, E]
    auto next = greedy_round(-distance, size);
    if (assignment.defined() && next.equal(assignment)) break;
    assignment = next;
    centroids = torch::zeros_like(centroids).index_add_(0, assignment, points) / size;
  }
  return assignment;
}

torch::Tensor split_matrix(const torch::Tensor& assignment, int64_t experts) {
  return torch::one_hot(assignment, experts).to(torch::kFloat);  // [N, E]
}

torch::Tensor expert_major_order(const torch::Tensor& assignment) {
  return std::get<1>(torch::sort(assignment, /*stable=*/true, 0, /*descending=*/false));
}

void check_balanced(const torch::Tensor& assignment, int64_t experts, const std::string& what) {
  const int64_t neurons = assignment.numel();
  auto host = assignment.to(torch::kCPU);
  if (neurons % experts != 0 || host.min().item<int64_t>() < 0 ||
      host.max().item<int64_t>() >= experts) {
    throw Error(fmt::format("{}: not a split of {} neurons into {} experts", what, neurons,
                            experts));
  }
  auto sizes = torch::bincount(host, {}, experts);
  if (!sizes.eq(neurons / experts).all().item<bool>()) {
    throw Error(fmt::format("{}: expert sizes are not all {}", what, neurons / experts));
  }
}

LearnedSplit learned_split(const torch::Tensor& affinity, double tau, int64_t max_iters,
                           bool unrolled) {
  const int64_t neurons = affinity.size(0), experts = affinity.size(1);
  auto log_kernel = affinity.to(torch::kFloat) / tau;  // [H, E]
  SinkhornOptions options;
  options.max_iters = max_iters;
  options.differentiable = unrolled;
  auto solved = sinkhorn_balanced(log_kernel, options);  // rows ship 1, experts take H / E
  LearnedSplit split;
  split.soft = torch::exp(log_kernel + solved.f.unsqueeze(1) + solved.g.unsqueeze(0));  // [H, E]
  split.assignment = greedy_round(split.soft, neurons / experts).to(affinity.device());
  auto hard = split_matrix(split.assignment, experts);
  split.ste = hard + (split.soft - split.soft.detach());
  split.iterations = solved.iterations;
  split.error = solved.error;
  return split;
}

}  // namespace moelab
