// The router interface. A router only *decides* which experts see which tokens and with
// what weight; the MoE layer (harness/moe_layer.h) dispatches, runs experts, applies
// capacity, combines, and computes the shared routing metrics identically for all routers.
#pragma once

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

namespace moelab {

using NamedTensor = std::pair<std::string, torch::Tensor>;

struct RouteContext {
  bool training = false;
  int64_t step = 0;
  int64_t layer = 0;
  int64_t seed = 0;
  torch::Tensor token_ids;   // [T] int64 where the task has token ids (LM); undefined otherwise
  torch::Tensor valid;       // [T] bool padding mask; undefined = every token is real
  int64_t group_size = 0;    // tokens per routing group (one image / sequence); 0 = all T
  bool collect_metrics = false;  // a logging step: compute the detached metrics
};

// A sparse assignment of A (token, expert, weight) triples; covers top-k, expert choice,
// variable k and tokens that get no expert at all.
struct RouteResult {
  torch::Tensor token;     // [A] int64
  torch::Tensor expert;    // [A] int64
  torch::Tensor weight;    // [A] float, combine weight (carries the router's gradient)
  torch::Tensor priority;  // [A] float, detached; who an over-full expert keeps (drop_policy=probs)
  torch::Tensor logits;    // [T, E] raw router logits, optional (router z metric)
  torch::Tensor probs;     // [T, E] full routing probabilities, optional (gate entropy)
  std::vector<NamedTensor> aux_losses;  // already weighted, differentiable scalars
  std::vector<NamedTensor> metrics;     // router-specific, detached, on the device

  // From per-token choices: indices [T, k] int64 and weights [T, k].
  static RouteResult from_topk(const torch::Tensor& indices, const torch::Tensor& weights);
};

struct RouterShape {
  int64_t dim = 0;      // token representation width D
  int64_t experts = 0;  // E
};

class Router : public torch::nn::Module {
 public:
  // x: [T, D] token representations (LM tokens, image patches alike).
  virtual RouteResult route(const torch::Tensor& x, const RouteContext& ctx) = 0;
  // Called once after each optimizer step (gradient-free state such as selection biases).
  virtual void on_step_end(int64_t /*step*/) {}
};

}  // namespace moelab
