// `remoe`: ReLU routing (ReMoE, Wang et al. 2024, arXiv 2412.14711). Gates g = ReLU(logits):
// a token uses every expert whose gate is positive, with that gate as its weight, so the
// number of experts varies by token and the routing is differentiable everywhere it is
// active. Sparsity comes from an L1 penalty lambda * mean_t sum_e w_e g_te, with the
// load-balancing weights w_e = f_e = E / (k T) * (tokens using e), detached (balance: true;
// else w_e = 1), whose coefficient adapts after every optimizer step to hold the share of
// zero gates at the target 1 - k/E: lambda *= alpha when the step's gates were denser than
// that, lambda /= alpha when sparser. Metrics: k_mean (experts per real token), l1_coef.
#pragma once

#include "harness/core/fields.h"
#include "routers/router.h"

namespace moelab {

struct RemoeOptions {
  int64_t k = 2;
  double alpha = 1.2;
  double lambda_init = 1e-8;
  bool balance = true;
  double ortho_coef = 0.0;

  template <class V>
  void visit(V& v) {
    v(k, "k", "target number of active experts per token (sets the target sparsity 1 - k/E)",
      at_least(1));
    v(alpha, "alpha", "factor the L1 coefficient moves by per step", greater_than(1));
    v(lambda_init, "lambda_init", "initial L1 coefficient", greater_than(0));
    v(balance, "balance", "weight each expert's L1 term by its load share f_e (the paper's "
                          "load-balancing refinement)");
    v(ortho_coef, "ortho_coef", kOrthoHelp, ortho_spec());
  }
  void check(const RouterShape& shape) const;
};

class RemoeRouter : public LogitRouter {
 public:
  using Options = RemoeOptions;
  RemoeRouter(const RemoeOptions& options, const RouterShape& shape);
  RouteResult decide(const torch::Tensor& logits, const RouteContext& ctx) override;
  double ortho_coef() const override { return options_.ortho_coef; }
  void on_step_end(int64_t step) override;
  double l1_coef() const { return l1_coef_.item<double>(); }

 private:
  RemoeOptions options_;
  int64_t experts_;
  torch::Tensor l1_coef_;      // [] fp64 buffer: lambda
  torch::Tensor step_active_;  // [2] fp64 buffer: active gates and real tokens since the last step
};

}  // namespace moelab
