// `quantile`: quantile balancing (the Kimi K3 technical report §2.3.3 and Appendix D, as the
// public Megatron-LM and torchtitan implementations describe it; moelab's details are in
// docs/methods.md). A per-expert selection bias b, like loss_free's and without gradient, but
// set once per optimizer step from the step's own scores instead of nudged by a fixed rate:
// each token's cutoff lambda_t is its (k+1)-th largest biased score s_t + b, and expert e's
// new bias is minus the (1 - k/E) quantile of s_te - lambda_t over the step's real tokens, the
// bias at which e would take its fair share k/E of them; the biases are then centred (a common
// shift changes no selection). The gates come from the unbiased scores. No auxiliary loss.
#pragma once

#include <vector>

#include "harness/core/fields.h"
#include "routers/router.h"

namespace moelab {

struct QuantileOptions {
  int64_t k = 2;
  std::string score = "sigmoid";
  bool renormalize = true;
  double rate = 1.0;
  double z_coef = 0.0;
  double ortho_coef = 0.0;

  template <class V>
  void visit(V& v) {
    v(k, "k", "experts per token", at_least(1));
    v(score, "score", "affinity: element-wise sigmoid or softmax over experts",
      one_of({"sigmoid", "softmax"}));
    v(renormalize, "renormalize", "rescale the k gates to sum to 1 (k > 1 only)");
    v(rate, "rate", "share of the way the bias moves to the step's quantile bias (1: all)",
      above_up_to(0, 1));
    v(z_coef, "z_coef", "weight of the router z-loss", at_least(0));
    v(ortho_coef, "ortho_coef", kOrthoHelp, ortho_spec());
  }
  void check(const RouterShape& shape) const;
};

// The quantile bias [E] for the scores `scores` [N, E] of a step under the current `bias` [E].
torch::Tensor quantile_bias(const torch::Tensor& scores, const torch::Tensor& bias, int64_t k);

class QuantileRouter : public LogitRouter {
 public:
  using Options = QuantileOptions;
  QuantileRouter(const QuantileOptions& options, const RouterShape& shape);
  RouteResult decide(const torch::Tensor& logits, const RouteContext& ctx) override;
  double ortho_coef() const override { return options_.ortho_coef; }
  void on_step_end(int64_t step) override;
  const torch::Tensor& bias() const { return bias_; }

 private:
  QuantileOptions options_;
  torch::Tensor bias_;                       // [E] fp32 buffer
  std::vector<torch::Tensor> step_scores_;   // the step's real tokens' scores, [N_i, E] each
};

}  // namespace moelab
