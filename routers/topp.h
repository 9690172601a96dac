// `topp`: dynamic top-p routing (Huang et al. 2024, "Harder Tasks Need More Experts: Dynamic
// Routing in MoE Models", arXiv 2403.07652). A token takes experts in order of softmax
// probability until their cumulative mass reaches p (at least min_k, at most max_k); the gates
// are the chosen experts' probabilities, so a confident token uses one expert and an
// uncertain one several. The paper's dynamic loss (the entropy of the probabilities, which
// keeps the router from spreading its mass to take every expert) and the Switch balance loss
// are the options entropy_coef and aux_coef. Metric k_mean: experts chosen per real token.
#pragma once

#include "harness/core/fields.h"
#include "routers/router.h"

namespace moelab {

struct TopPOptions {
  double p = 0.4;
  int64_t min_k = 1;
  int64_t max_k = 0;
  bool renormalize = false;
  double entropy_coef = 1e-4;
  double aux_coef = 1e-2;
  double z_coef = 0.0;
  double ortho_coef = 0.0;

  template <class V>
  void visit(V& v) {
    v(p, "p", "cumulative probability mass a token's experts must reach, in (0, 1]",
      above_up_to(0, 1));
    v(min_k, "min_k", "fewest experts per token", at_least(1));
    v(max_k, "max_k", "most experts per token (0: all of them)", at_least(0));
    v(renormalize, "renormalize", "rescale a token's gates to sum to 1 (the paper does not)");
    v(entropy_coef, "entropy_coef",
      "weight of the dynamic loss: mean entropy of the routing probabilities", at_least(0));
    v(aux_coef, "aux_coef", "weight of the Switch balance loss (all chosen experts counted)",
      at_least(0));
    v(z_coef, "z_coef", "weight of the router z-loss", at_least(0));
    v(ortho_coef, "ortho_coef", kOrthoHelp, ortho_spec());
  }
  void check(const RouterShape& shape) const;
};

// The experts a token takes: [T, E] bool, for probabilities `probs` [T, E] (rows sum to 1).
// Expert e is taken when the mass of the experts ranked before it is below p, or its rank is
// below min_k, and its rank is below max_k (0: no limit). Ties in probability rank by index.
torch::Tensor top_p_mask(const torch::Tensor& probs, double p, int64_t min_k, int64_t max_k);

class TopPRouter : public LogitRouter {
 public:
  using Options = TopPOptions;
  TopPRouter(const TopPOptions& options, const RouterShape& shape);
  RouteResult decide(const torch::Tensor& logits, const RouteContext& ctx) override;
  double ortho_coef() const override { return options_.ortho_coef; }

 private:
  TopPOptions options_;
};

}  // namespace moelab
