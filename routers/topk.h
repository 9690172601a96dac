// `topk`: softmax token-choice routing (the SMoE baseline). Each token picks its k
// highest-scoring experts. Softmax before top-k (optionally renormalised over the k) or
// after top-k (a softmax over the k chosen logits). Switch balance loss and z-loss are
// available through aux_coef / z_coef (off by default; the `aux_loss` router turns them on).
#pragma once

#include "harness/core/fields.h"
#include "routers/router.h"

namespace moelab {

struct TopKOptions {
  int64_t k = 2;
  std::string softmax = "after";
  bool renormalize = true;
  double aux_coef = 0.0;
  double z_coef = 0.0;
  double ortho_coef = 0.0;

  template <class V>
  void visit(V& v) {
    v(k, "k", "experts per token", at_least(1));
    v(softmax, "softmax",
      "after: gates = softmax over the k chosen logits (k = 1: the full softmax probability); "
      "before: gates = full softmax "
      "probabilities of the chosen experts",
      one_of({"after", "before"}));
    v(renormalize, "renormalize",
      "with softmax=before and k > 1, rescale the k gates to sum to 1");
    v(aux_coef, "aux_coef", "weight of the Switch load-balancing loss", at_least(0));
    v(z_coef, "z_coef", "weight of the ST-MoE router z-loss", at_least(0));
    v(ortho_coef, "ortho_coef", kOrthoHelp, ortho_spec());
  }
  void check(const RouterShape& shape) const;
};

// Top-k selection with softmax gates: indices and gates [T, k] from logits [T, E]. With k = 1
// the gate is the chosen expert's full softmax probability whatever `softmax` and
// `renormalize` say: a softmax over one logit, or one gate renormalised, is the constant 1,
// which passes no gradient to the router. This is Switch Transformer's top-1 gate; Megatron
// renormalises only when k > 1 too, and refuses softmax-after with k = 1 where moelab uses
// the probability.
// Gates [T, k] for the chosen `indices` [T, k] of `scores` [T, E]: a softmax over the chosen
// scores, or with k = 1 the full softmax probability (the k = 1 rule above). Shared by every
// router that gates by a softmax over its top k (topk, noisy_topk, ssr's Sinkhorn steps).
torch::Tensor chosen_softmax(const torch::Tensor& scores, const torch::Tensor& indices);

std::pair<torch::Tensor, torch::Tensor> softmax_topk(const torch::Tensor& logits, int64_t k,
                                                     const std::string& softmax, bool renormalize);

// Throws ConfigError unless 1 <= k <= experts.
void check_k(double k, const RouterShape& shape, const char* key = "router.k");

class TopKRouter : public LogitRouter {
 public:
  using Options = TopKOptions;
  TopKRouter(const TopKOptions& options, const RouterShape& shape);
  RouteResult decide(const torch::Tensor& logits, const RouteContext& ctx) override;
  double ortho_coef() const override { return options_.ortho_coef; }

 private:
  TopKOptions options_;
};

}  // namespace moelab
