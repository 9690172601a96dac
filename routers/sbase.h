// `sbase` (S-BASE, Clark et al. 2022): at every training step a balanced Sinkhorn plan on
// exp(z) picks each token's k experts (indices only); the gates are the ordinary router
// activations of the chosen experts: sigmoid(z) for k = 1, softmax(z) over all experts for
// k > 1. Evaluation: plain top-k of the activation. No auxiliary loss. The shared log-domain
// solver replaces Megatron's exp-space loop (no overflow, relative tolerance, iteration cap).
#pragma once

#include "harness/core/fields.h"
#include "routers/router.h"

namespace moelab {

struct SbaseOptions {
  int64_t k = 1;
  int64_t max_iters = 100;
  double tol = 1e-4;
  int64_t check_every = 5;

  template <class V>
  void visit(V& v) {
    v(k, "k", "experts per token", at_least(1));
    v(max_iters, "max_iters", "Sinkhorn iteration cap", at_least(1));
    v(tol, "tol", "relative column-marginal tolerance", greater_than(0));
    v(check_every, "check_every", "iterations between convergence checks", at_least(1));
  }
  void check(const RouterShape& shape) const;
};

class SbaseRouter : public LogitRouter {
 public:
  using Options = SbaseOptions;
  SbaseRouter(const SbaseOptions& options, const RouterShape& shape);
  RouteResult decide(const torch::Tensor& logits, const RouteContext& ctx) override;

 private:
  SbaseOptions options_;
};

}  // namespace moelab
