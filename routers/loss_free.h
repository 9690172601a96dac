// `loss_free` (Wang et al. 2024; DeepSeek-V3): a per-expert selection bias b, added to the
// scores only to choose the top k (gates come from the unbiased scores), updated after every
// optimizer step by b_e += rate * sign(mean load - load_e) from the step's token counts.
// No gradient reaches b; no auxiliary loss unless aux_coef / z_coef ask for one.
#pragma once

#include "harness/core/fields.h"
#include "routers/router.h"

namespace moelab {

struct LossFreeOptions {
  int64_t k = 2;
  double rate = 1e-3;
  std::string score = "softmax";
  bool renormalize = true;
  double aux_coef = 0.0;
  double z_coef = 0.0;
  double ortho_coef = 0.0;

  template <class V>
  void visit(V& v) {
    v(k, "k", "experts per token", at_least(1));
    v(rate, "rate", "bias update speed u", at_least(0));
    v(score, "score", "affinity: softmax over experts or element-wise sigmoid",
      one_of({"softmax", "sigmoid"}));
    v(renormalize, "renormalize",
      "rescale the k gates to sum to 1 (k > 1 only: one renormalised gate is the constant 1)");
    v(aux_coef, "aux_coef", "Switch balance loss weight (the method uses none; for ablations)",
      at_least(0));
    v(z_coef, "z_coef", "router z-loss weight", at_least(0));
    v(ortho_coef, "ortho_coef", kOrthoHelp, ortho_spec());
  }
  void check(const RouterShape& shape) const;
};

class LossFreeRouter : public LogitRouter {
 public:
  using Options = LossFreeOptions;
  LossFreeRouter(const LossFreeOptions& options, const RouterShape& shape);
  RouteResult decide(const torch::Tensor& logits, const RouteContext& ctx) override;
  double ortho_coef() const override { return options_.ortho_coef; }
  void on_step_end(int64_t step) override;
  const torch::Tensor& bias() const { return bias_; }

 private:
  LossFreeOptions options_;
  torch::Tensor bias_;          // [E] fp32 buffer
  torch::Tensor step_counts_;   // [E] assignments counted in training since the last update
};

}  // namespace moelab
