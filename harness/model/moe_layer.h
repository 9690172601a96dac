// The MoE layer: asks its router for a decision, applies expert capacity, dispatches tokens
// by permutation (sorted by expert, one contiguous slice per expert), runs the experts,
// combines, and computes the shared routing metrics the same way for every router.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "harness/config/config.h"
#include "routers/router.h"

namespace moelab {

// Result of the capacity + sort step: the kept assignments in expert order.
struct Dispatch {
  torch::Tensor token;      // [A'] int64, sorted by expert
  torch::Tensor expert;     // [A'] int64, non-decreasing
  torch::Tensor weight;     // [A'] float
  torch::Tensor requested;  // [E] assignments each expert was asked to take (before capacity)
  std::vector<int64_t> kept_per_expert;  // [E] on the host, sizes of the contiguous slices
  int64_t assignments = 0;               // A, before capacity
};

// Capacity = ceil(capacity_factor * A / E) per expert (capacity_factor 0 = dropless);
// drop_policy "probs" keeps an expert's highest-priority assignments, "position" the
// earliest tokens.
Dispatch plan_dispatch(const RouteResult& route, int64_t experts, double capacity_factor,
                       const std::string& drop_policy);

// The masked-dense training form of a layer converted from a dense FFN (DOT-MoE §5.3): the
// experts' E*s neurons run as one dense FFN whose hidden units are masked per token by
// R_STE M_STE^T, R_STE = one-hot(router's top-k) + (P - stopgrad P) and M the neuron split
// (fixed: neuron e*s+j in expert e; learned: from affinities, see learned_split). Exactly
// the MoE's output, with the router's gradient reaching every expert. export_split() turns
// the layer into the ordinary sparse MoE.
struct MaskedTraining {
  bool enabled = false;
  bool learn_split = false;     // dot_moe: affinities [E*s, E] are parameters
  double tau_start = 1.0, tau_end = 0.1;
  int64_t anneal_steps = 0;     // tau falls linearly from tau_start to tau_end over these
  int64_t sinkhorn_iters = 30;
  double affinity_std = 0.01;
  double affinity_scale = 1.0;  // affinities = scale x parameter: scale x the step Adam takes
  bool unrolled = false;        // differentiate through the Sinkhorn iterations

  static MaskedTraining from(const RunConfig& config);
  double tau(int64_t step) const;
};

class MoELayerImpl : public torch::nn::Module {
 public:
  MoELayerImpl(int64_t dim, const MoeConfig& config, std::shared_ptr<Router> router,
               const MaskedTraining& masked = {});

  // x: [T, D] -> [T, D]; tokens that no expert kept get 0 (the block's residual carries them).
  // Reports to ctx.record: the router's weighted aux losses, and with ctx.collect_metrics
  // the shared metrics (detached scalars, plus per-expert loads) under block ctx.layer.
  torch::Tensor forward(const torch::Tensor& x, const RouteContext& ctx);


  Router& router() { return *router_; }
  std::shared_ptr<Router> router_ptr() const { return router_; }
  // Replaces the router (evaluation-time routing swaps); returns the previous one.
  std::shared_ptr<Router> swap_router(std::shared_ptr<Router> router);

  // Converted layers. Loads a dense FFN (w1 [H, D], b1 [H], w2 [D, H], b2 [D], torch Linear
  // layout) with its neurons in `order` [H] (expert e gets order[e*s .. e*s+s-1]); each
  // expert's output bias is b2 / k, so the k chosen experts add b2 once.
  void load_dense(const torch::Tensor& w1, const torch::Tensor& b1, const torch::Tensor& w2,
                  const torch::Tensor& b2, const torch::Tensor& order, int64_t k);
  bool masked() const { return masked_.enabled; }
  // Learned split: adds `margin` to the affinity of each neuron's expert in `assignment` [H],
  // so that the split starts there.
  void seed_affinity(const torch::Tensor& assignment, double margin);
  // The current neuron split [E*s] int64 over the stored neuron order (learned: rounded at
  // tau_end, the export temperature).
  torch::Tensor split() const;
  // Lays the experts' neurons out by split() and switches to the sparse MoE forward.
  void export_split();
  // Parameters of the E experts together (not the router, not the split's affinities).
  int64_t expert_parameter_count() const {
    return w_in_.numel() + b_in_.numel() + w_out_.numel() + b_out_.numel();
  }
  // The learned split's affinities: trained, but not part of the exported model.
  int64_t split_parameter_count() const { return affinity_.defined() ? affinity_.numel() : 0; }
  // Outputs of every expert on x [T, D], each including its b_out: [E, T, D].
  torch::Tensor all_expert_outputs(const torch::Tensor& x);

 private:
  torch::Tensor run_experts(const torch::Tensor& x, const Dispatch& dispatch);  // [A', D]
  torch::Tensor forward_sparse(const torch::Tensor& x, const RouteResult& route,
                               const RouteContext& ctx, double route_ms);
  torch::Tensor forward_soft(const torch::Tensor& x, const RouteResult& route,
                             const RouteContext& ctx, double route_ms);
  torch::Tensor forward_masked(const torch::Tensor& x, const RouteResult& route,
                               const RouteContext& ctx, double route_ms);
  // Shared metrics from the per-expert load [E] and the fractions the paths measure.
  void compute_metrics(const RouteResult& route, const RouteContext& ctx,
                       const torch::Tensor& load, double dropped_frac,
                       const torch::Tensor& unrouted_frac, double experts_per_token,
                       double route_ms);

  MoeConfig config_;
  MaskedTraining masked_;
  std::shared_ptr<Router> router_;
  torch::Tensor w_in_, b_in_, w_out_, b_out_;  // [E, D, H], [E, H], [E, H, D], [E, D]
  torch::Tensor affinity_;                     // [E*H, E] with masked_.learn_split, / scale
  torch::Tensor affinities() const { return affinity_ * masked_.affinity_scale; }  // [E*H, E]
};
TORCH_MODULE(MoELayer);

}  // namespace moelab
