// The MoE layer: asks its router for a decision, applies expert capacity, dispatches tokens
// by permutation (sorted by expert, one contiguous slice per expert), runs the experts,
// combines, and computes the shared routing metrics the same way for every router. Shared
// experts (model.moe.shared_experts) see every token and are added to the routed output
// outside the load metrics; model.moe.router_grad = dense adds DenseMixer's value-zero term. Null
// experts (MoE++: zero, copy, constant; model.moe.null_experts) follow the E FFN experts in
// the router's choices and are applied here without capacity or FFN compute; the load
// metrics cover the FFN experts, null_frac the share of assignments the null experts took.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "harness/config/config.h"
#include "harness/model/grouped_experts.h"
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
  int64_t capacity = 0;                  // per expert; 0 = dropless
};

// Capacity = ceil(capacity_factor * A / E) per expert (capacity_factor 0 = dropless);
// drop_policy "probs" keeps an expert's highest-priority assignments, "position" the
// earliest tokens.
Dispatch plan_dispatch(const RouteResult& route, int64_t experts, double capacity_factor,
                       const std::string& drop_policy);

// What a training form computes for one forward.
struct FormOutput {
  torch::Tensor y;                    // [T, D]
  std::vector<NamedTensor> metrics;   // the form's own routing metrics (detached scalars)
};

// Another training shape of the layer's experts, installed by a layer above the model (the
// conversion's masked-dense form, harness/convert/masked_dense.h): it replaces dispatch and
// combine and keeps every assignment of the route; the layer still routes, records the aux
// losses and measures. A form's parameters are the layer's while it is installed.
class TrainingForm : public torch::nn::Module {
 public:
  virtual FormOutput combine(const torch::Tensor& x, const RouteResult& route,
                             const RouteContext& ctx, const ExpertWeights& experts) = 0;
};

// expert_cosine is measured on a probe forward's first real tokens, at most this many.
inline constexpr int64_t kCosineTokens = 1024;

class MoELayerImpl : public torch::nn::Module {
 public:
  MoELayerImpl(int64_t dim, const MoeConfig& config, std::shared_ptr<Router> router);

  // x: [T, D] -> [T, D]; tokens that no expert kept get 0 (the block's residual carries them).
  // Reports to ctx.record: the router's weighted aux losses, and with ctx.collect_metrics
  // the shared metrics (detached scalars, plus per-expert loads) under block ctx.layer.
  torch::Tensor forward(const torch::Tensor& x, const RouteContext& ctx);


  Router& router() { return *router_; }
  std::shared_ptr<Router> router_ptr() const { return router_; }
  // Replaces the router (evaluation-time routing swaps); returns the previous one.
  std::shared_ptr<Router> swap_router(std::shared_ptr<Router> router);

  const MoeConfig& config() const { return config_; }
  ExpertWeights expert_weights() const { return {w_in_, b_in_, w_out_, b_out_}; }
  // Parameters of the E experts together (not the router, not a training form's).
  int64_t expert_parameter_count() const {
    return w_in_.numel() + b_in_.numel() + w_out_.numel() + b_out_.numel();
  }
  // Installs `form` (registered as submodule "form") in place of dispatch and combine;
  // remove_form() returns to the sparse forward.
  void install_form(std::shared_ptr<TrainingForm> form);
  void remove_form();

 private:
  torch::Tensor forward_sparse(const torch::Tensor& x, const RouteResult& route,
                               const RouteContext& ctx, double route_ms);
  torch::Tensor forward_soft(const torch::Tensor& x, const RouteResult& route,
                             const RouteContext& ctx, double route_ms);
  torch::Tensor forward_form(const torch::Tensor& x, const RouteResult& route,
                             const RouteContext& ctx, double route_ms);
  // The assignments of `route` where keep [A] is true; every other field as it was.
  static RouteResult keep_assignments(const RouteResult& route, const torch::Tensor& keep);
  // With ctx.probe: the layer's LayerProbe (router.h) of this forward, added to ctx.record.
  void record_probe(const torch::Tensor& x, const RouteResult& route, const RouteContext& ctx);
  // Adds the selection diagnostics (routing_diagnostics.h) to route.metrics.
  static void add_selection_diagnostics(RouteResult& route, const RouteContext& ctx);
  // The router's decision on x, or with ctx.replay the one recorded for this block
  // (RouteReplay, router.h): recorded in Record mode, imposed in Replay mode.
  RouteResult decide(const torch::Tensor& x, const RouteContext& ctx);
  // Routes `x` from fp32 logits, autocast or not (precision.h).
  RouteResult route_in_fp32(const torch::Tensor& x, const RouteContext& ctx);
  // The router's linear maps on `tokens` tokens: 2 per token per weight of its matrices.
  double router_flops(int64_t tokens) const;
  // Counts the weights of router_'s matrices (at construction and on a swap).
  void count_router_weights();
  // Every FFN expert on the same rows [N, D], outside the autograd graph: [E, N, D] fp32.
  torch::Tensor every_expert(const torch::Tensor& rows);
  // The shared experts' output (model.moe.shared_experts): one GELU FFN of their neurons
  // together, times sigmoid(x . w) when gated; 0 for padding. [T, D]
  torch::Tensor shared_output(const torch::Tensor& x, const RouteContext& ctx);
  // model.moe.router_grad = dense (DenseMixer): sum over each real token's unselected FFN
  // experts e of (p_te - sg(p_te)) sg(f_e(x_t)), p the router's probabilities: 0 in value, and
  // through p the gradient of every expert's output. [T, D]
  torch::Tensor dense_router_term(const torch::Tensor& x, const RouteResult& route,
                                  const RouteContext& ctx);
  // Null experts' outputs (MoE++): weight x (x_t for copy, the learned vector for constant,
  // 0 for zero) summed per token. [T, D]
  torch::Tensor null_outputs(const torch::Tensor& x, const RouteResult& nulls);
  // Shared metrics from the per-expert load [E] and the fractions the paths measure;
  // `capacity` is the per-expert capacity the load is measured against (0: the mean load).
  void compute_metrics(const RouteResult& route, const RouteContext& ctx,
                       const torch::Tensor& load, double dropped_frac,
                       const torch::Tensor& unrouted_frac, double experts_per_token,
                       double capacity, double route_ms);

  MoeConfig config_;
  std::shared_ptr<Router> router_;
  bool dense_router_grad_;                     // model.moe.router_grad = dense
  int64_t router_weights_ = 0;                 // of router_'s matrices (router_flops)
  std::shared_ptr<TrainingForm> form_;         // none: the sparse (or soft) forward
  torch::Tensor w_in_, b_in_, w_out_, b_out_;  // [E, D, H], [E, H], [E, H, D], [E, D]
  torch::Tensor interval_load_;  // [E] assignments requested in training since the last logging step
  std::vector<std::string> null_kinds_;  // model.moe.null_experts, experts E, E+1, ...
  torch::Tensor null_copy_;              // [N] 1 for a copy expert
  torch::Tensor null_is_constant_;       // [N, 1] 1 for a constant expert
  torch::Tensor null_constant_;          // [N, D] the constant experts' vectors (rows of others stay 0)
  // The shared experts as one FFN of all their neurons S: [D, S], [S], [S, D], [D]; the gate's
  // weight [D] with shared_gate sigmoid. Undefined without shared experts.
  torch::Tensor shared_w_in_, shared_b_in_, shared_w_out_, shared_b_out_, shared_gate_;
};
TORCH_MODULE(MoELayer);

}  // namespace moelab
