// `quantile`: Quantile Balancing (the Kimi K3 technical report §2.3.3, Eqs. 13-14, Appendices
// C-D; moelab's details are in docs/methods.md). Sigmoid scores s; a per-expert bias b, added
// to the scores to choose each token's top k and kept out of the gates, like loss_free's, but
// set once per optimizer step from the step's own scores instead of nudged by a fixed rate.
// Routing takes each token's top k+1 of s_t + b: the first k are its experts, the (k+1)-th is
// its cutoff alpha_t. Expert e enters token t's top k exactly when b_e > r_te = alpha_t - s_te
// (the bias t requires of e), so the bias that gives e its fair share q = N k / E of the step's
// N real tokens is the (floor(q) + 1)-th smallest r_.e (`estimator: exact`, Eq. 14), or that
// quantile read from a histogram of r (`estimator: histogram`, Appendix D, what K3 trained
// with). The new biases are centred (a common shift changes no selection) and apply from the
// next step on. No auxiliary loss.
#pragma once

#include <vector>

#include "harness/core/fields.h"
#include "routers/router.h"

namespace moelab {

struct QuantileOptions {
  int64_t k = 2;
  std::string score = "sigmoid";
  bool renormalize = true;
  std::string estimator = "exact";
  int64_t bins = 1000;
  double rate = 1.0;
  double z_coef = 0.0;
  double ortho_coef = 0.0;

  template <class V>
  void visit(V& v) {
    v(k, "k", "experts per token", at_least(1));
    v(score, "score", "affinity: element-wise sigmoid (the method) or softmax over experts",
      one_of({"sigmoid", "softmax"}));
    v(renormalize, "renormalize", "rescale the k gates to sum to 1 (k > 1 only)");
    v(estimator, "estimator",
      "the step's quantile: exact order statistic of the pooled required biases, or read from "
      "a histogram of them (K3 Appendix D)",
      one_of({"exact", "histogram"}));
    v(bins, "bins", "histogram bins per expert over [min b - 1, max b + 1] (estimator: histogram)",
      at_least(2));
    v(rate, "rate", "share of the way the bias moves to the step's quantile bias (1: all)",
      above_up_to(0, 1));
    v(z_coef, "z_coef", "weight of the router z-loss", at_least(0));
    v(ortho_coef, "ortho_coef", kOrthoHelp, ortho_spec());
  }
  void check(const RouterShape& shape) const;
};

// The centred bias [E] that gives each expert its fair share of the step: the
// (floor(N k / E) + 1)-th smallest of its required biases `required` [N, E] (K3 Eq. 14).
torch::Tensor exact_quantile_bias(const torch::Tensor& required, int64_t k);

// The same quantile read from a histogram (K3 Appendix D): `bins` uniform bins over
// [min b - 1, max b + 1] of the current bias `bias` [E], which hold every required bias of
// sigmoid or softmax scores; in the first bin whose cumulative count reaches ceil(q),
// q = N k / E, linear interpolation to q. Centred, [E].
torch::Tensor histogram_quantile_bias(const torch::Tensor& required, const torch::Tensor& bias,
                                      int64_t k, int64_t bins);

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
  torch::Tensor bias_;                         // [E] fp32 buffer
  std::vector<torch::Tensor> step_required_;   // the step's real tokens' r, [N_i, E] each
};

}  // namespace moelab
