// `deepseek_v3`: DeepSeek-V3's routing (arXiv 2412.19437 §2.1.2; the bias from Wang et al.,
// arXiv 2408.15664). Affinities s = sigmoid(logits) (score: sqrtsoftplus, DeepSeek-V4's and
// Megatron-Core's sqrt(softplus(logits)), instead); each token takes the k experts of largest
// s + b, where b is a per-expert selection bias that no gradient reaches, moved after every
// optimizer step by b_e += gamma * sign(mean load - load_e); the gates are the chosen
// affinities normalised to sum to 1 (for k > 1; with k = 1 the affinity itself), times `scale`. Group-limited routing (groups > 1): the
// experts form `groups` equal groups, a group scores the sum of its top-2 biased affinities,
// and a token chooses only inside its `topk_groups` best groups. A complementary
// sequence-wise balance loss alpha * sum_e f_e P_e, per sequence (an image's patches are its
// sequence): f_e = E / (k T_s) * (tokens of the sequence choosing e), P_e = the mean over the
// sequence of s_te / sum_j s_tj; averaged over the sequences.
#pragma once

#include "harness/core/fields.h"
#include "routers/router.h"

namespace moelab {

struct DeepSeekV3Options {
  int64_t k = 2;
  double gamma = 1e-3;
  double alpha = 1e-4;
  double scale = 1.0;
  int64_t groups = 1;
  int64_t topk_groups = 1;
  double z_coef = 0.0;
  double ortho_coef = 0.0;
  std::string score = "sigmoid";

  template <class V>
  void visit(V& v) {
    v(k, "k", "experts per token", at_least(1));
    v(score, "score",
      "affinity of the logits: sigmoid (DeepSeek-V3) or sqrtsoftplus, sqrt(softplus(z)) "
      "(DeepSeek-V4; Megatron-Core's score function of that name)",
      hashed_unless(std::string("sigmoid"), one_of({"sigmoid", "sqrtsoftplus"})));
    v(gamma, "gamma", "bias update speed (selection bias moved by gamma per step)", at_least(0));
    v(alpha, "alpha", "weight of the sequence-wise balance loss", at_least(0));
    v(scale, "scale", "routed scaling factor: the gates sum to this", greater_than(0));
    v(groups, "groups", "expert groups for group-limited routing (1: off); divides the experts",
      at_least(1));
    v(topk_groups, "topk_groups", "groups a token may choose from (with groups > 1)",
      at_least(1));
    v(z_coef, "z_coef", "weight of the router z-loss", at_least(0));
    v(ortho_coef, "ortho_coef", kOrthoHelp, ortho_spec());
  }
  void check(const RouterShape& shape) const;
};

// The selection of one token-choice step: indices [T, k] of the k largest `biased` [T, E]
// scores, restricted (groups > 1) to each token's topk_groups groups of largest top-2 sums.
torch::Tensor group_limited_topk(const torch::Tensor& biased, int64_t k, int64_t groups,
                                 int64_t topk_groups);

class DeepSeekV3Router : public LogitRouter {
 public:
  using Options = DeepSeekV3Options;
  DeepSeekV3Router(const DeepSeekV3Options& options, const RouterShape& shape);
  RouteResult decide(const torch::Tensor& logits, const RouteContext& ctx) override;
  double ortho_coef() const override { return options_.ortho_coef; }
  void on_step_end(int64_t step) override;
  const torch::Tensor& bias() const { return bias_; }

 private:
  DeepSeekV3Options options_;
  torch::Tensor bias_;         // [E] fp32 buffer
  torch::Tensor step_counts_;  // [E] assignments counted in training since the last update
};

}  // namespace moelab
