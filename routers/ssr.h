// `ssr`: Selective Sinkhorn Routing (arXiv 2511.08972). On a fraction p of training steps the
// gates and choices come from the entropic transport plan with balanced expert marginals
// (each token ships 1, each expert receives T/E): Pi_i ∝ exp(C_i/xi + g), gates = softmax
// over the top-k of C/xi + g (the plan renormalised over the chosen experts). On the other
// steps, and always at evaluation, plain softmax top-k. No auxiliary loss by design.
// Unknowns of the paper are parameters with the PROPOSAL defaults (moelab's choices): cost =
// softmax(z), xi = 0.05, duals without gradient (gradient flows through C), one Bernoulli(p)
// draw per step shared by all layers, derived from (seed, step) so a resumed run redraws the
// same steps.
#pragma once

#include "harness/core/fields.h"
#include "routers/router.h"
#include "routers/sinkhorn.h"

namespace moelab {

struct SsrOptions {
  int64_t k = 2;
  double p = 0.01;
  double xi = 0.05;
  std::string cost = "softmax";
  int64_t max_iters = 100;
  double tol = 1e-4;
  int64_t check_every = 5;
  double noise = 0.0;
  std::string draw = "step";
  std::string grad = "cost";
  double aux_coef = 0.0;
  double z_coef = 0.0;
  double ortho_coef = 0.0;

  template <class V>
  void visit(V& v) {
    v(k, "k", "experts per token", at_least(1));
    v(p, "p", "probability that a training step routes by Sinkhorn", in_range(0, 1));
    v(xi, "xi", "entropic regularisation xi (PROPOSAL: 0.05 for softmax cost, 1.0 for logits)",
      greater_than(0));
    v(cost, "cost", "compatibility matrix C: softmax(z) or the logits z",
      one_of({"softmax", "logits"}));
    v(max_iters, "max_iters", "Sinkhorn iteration cap", at_least(1));
    v(tol, "tol", "relative column-marginal tolerance", greater_than(0));
    v(check_every, "check_every", "iterations between convergence checks (host syncs)",
      at_least(1));
    v(noise, "noise", "std of Gaussian noise added to the logits in training (0 = off)",
      at_least(0));
    v(draw, "draw",
      "step: one Sinkhorn draw per step for all layers; layer: an independent draw per layer",
      one_of({"step", "layer"}));
    v(grad, "grad",
      "cost: duals without gradient, gates differentiable through C (PROPOSAL); none: the "
      "Sinkhorn branch passes no gradient to the router",
      one_of({"cost", "none"}));
    v(aux_coef, "aux_coef", "Switch balance loss weight (SSR uses none; for ablations)",
      at_least(0));
    v(z_coef, "z_coef", "router z-loss weight (SSR uses none; for ablations)", at_least(0));
    v(ortho_coef, "ortho_coef", kOrthoHelp, ortho_spec());
  }
  void check(const RouterShape& shape) const;
};

// True when the Sinkhorn branch is taken at this (seed, step, layer).
bool ssr_draw(const SsrOptions& options, const RouteContext& ctx);

class SsrRouter : public LogitRouter {
 public:
  using Options = SsrOptions;
  SsrRouter(const SsrOptions& options, const RouterShape& shape);
  RouteResult decide(const torch::Tensor& logits, const RouteContext& ctx) override;
  double ortho_coef() const override { return options_.ortho_coef; }

 private:
  RouteResult sinkhorn_branch(const torch::Tensor& logits, const RouteContext& ctx);
  SsrOptions options_;
};

}  // namespace moelab
