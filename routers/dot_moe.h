// `dot_moe`: the token router of DOT-MoE (arXiv 2606.01666 §5.3). Softmax
// over experts, top-k, and experts summed WITHOUT gate weighting: each chosen expert gets
// weight 1 in the forward pass, and the router learns through the straight-through estimator
// R_STE = R + (P - stopgrad(P)). Trained with the Switch balance loss and the ST-MoE z-loss
// (weights PROPOSAL: 1e-2 and 1e-3). It is the router of every model converted from a dense
// one (`convert:`), and trainable from scratch like any other router.
#pragma once

#include "harness/core/fields.h"
#include "routers/router.h"

namespace moelab {

struct DotMoeOptions {
  int64_t k = 2;
  double aux_coef = 0.01;
  double z_coef = 0.001;
  double init_std = 0.01;

  template <class V>
  void visit(V& v) {
    v(k, "k", "experts per token (their outputs are summed unweighted)", at_least(1));
    v(aux_coef, "aux_coef", "weight of the Switch load-balancing loss (PROPOSAL 1e-2)",
      at_least(0));
    v(z_coef, "z_coef", "weight of the ST-MoE router z-loss (PROPOSAL 1e-3)", at_least(0));
    v(init_std, "init_std", "router weights ~ N(0, init_std^2) (PROPOSAL 0.01)",
      greater_than(0));
  }
  void check(const RouterShape& shape) const;
};

class DotMoeRouter : public LogitRouter {
 public:
  using Options = DotMoeOptions;
  DotMoeRouter(const DotMoeOptions& options, const RouterShape& shape);
  // weights: 1 + (P - stopgrad P) at the k chosen experts; probs and logits always set.
  RouteResult decide(const torch::Tensor& logits, const RouteContext& ctx) override;
  int64_t k() const { return options_.k; }

 private:
  DotMoeOptions options_;
};

}  // namespace moelab
