// The MoE layer: asks its router for a decision, applies expert capacity, dispatches tokens
// by permutation (sorted by expert, one contiguous slice per expert), runs the experts,
// combines, and computes the shared routing metrics the same way for every router.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "harness/config.h"
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

class MoELayerImpl : public torch::nn::Module {
 public:
  MoELayerImpl(int64_t dim, const MoeConfig& config, std::shared_ptr<Router> router);

  // x: [T, D] -> [T, D]; tokens that no expert kept get 0 (the block's residual carries them).
  torch::Tensor forward(const torch::Tensor& x, const RouteContext& ctx);

  // From the last forward: the sum of the router's weighted aux losses (0-dim tensor).
  torch::Tensor aux_loss() const { return aux_loss_; }
  // From the last forward with ctx.collect_metrics: detached scalars, plus per-expert loads.
  const std::vector<NamedTensor>& metrics() const { return metrics_; }

  Router& router() { return *router_; }
  std::shared_ptr<Router> router_ptr() const { return router_; }
  // Replaces the router (evaluation-time routing swaps); returns the previous one.
  std::shared_ptr<Router> swap_router(std::shared_ptr<Router> router);

 private:
  torch::Tensor expert_ffn(int64_t expert, const torch::Tensor& input);          // [n, D]
  torch::Tensor run_experts(const torch::Tensor& x, const Dispatch& dispatch);  // [A', D]
  torch::Tensor forward_sparse(const torch::Tensor& x, const RouteResult& route,
                               const RouteContext& ctx, double route_ms);
  torch::Tensor forward_soft(const torch::Tensor& x, const RouteResult& route,
                             const RouteContext& ctx, double route_ms);
  // Shared metrics from the per-expert load [E] and the fractions the paths measure.
  void compute_metrics(const RouteResult& route, const torch::Tensor& load, double dropped_frac,
                       const torch::Tensor& unrouted_frac, double experts_per_token,
                       double route_ms);

  MoeConfig config_;
  std::shared_ptr<Router> router_;
  torch::Tensor w_in_, b_in_, w_out_, b_out_;  // [E, D, H], [E, H], [E, H, D], [E, D]
  torch::Tensor aux_loss_;
  std::vector<NamedTensor> metrics_;
};
TORCH_MODULE(MoELayer);

}  // namespace moelab
