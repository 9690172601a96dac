// `xmoe` (Chi et al. 2022, as in the USMoE/CompeteSMoE code base): routing in a
// low-dimensional space against L2-normalised expert embeddings (orthogonal init, gain 0.32,
// rescaled to norm 1.5 before every use, without gradient); logits = (W_p x) · ê_e; top-k
// with softmax over the chosen logits; Switch balance loss on softmax(logits / 0.3).
#pragma once

#include "harness/core/fields.h"
#include "routers/router.h"

namespace moelab {

struct XmoeOptions {
  int64_t k = 2;
  int64_t routing_dim = 8;
  double embedding_norm = 1.5;
  double balance_temperature = 0.3;
  double aux_coef = 0.01;
  double z_coef = 0.0;

  template <class V>
  void visit(V& v) {
    v(k, "k", "experts per token", at_least(1));
    v(routing_dim, "routing_dim", "dimension d_e of the routing space", at_least(1));
    v(embedding_norm, "embedding_norm", "norm the expert embeddings are rescaled to",
      greater_than(0));
    v(balance_temperature, "balance_temperature",
      "temperature of the softmax the balance loss is computed on", greater_than(0));
    v(aux_coef, "aux_coef", "weight of the Switch load-balancing loss", at_least(0));
    v(z_coef, "z_coef", "weight of the router z-loss", at_least(0));
  }
  void check(const RouterShape& shape) const;
};

class XmoeRouter : public Router {
 public:
  using Options = XmoeOptions;
  XmoeRouter(const XmoeOptions& options, const RouterShape& shape);
  RouteResult route(const torch::Tensor& x, const RouteContext& ctx) override;
  torch::Tensor expert_embeddings() const override { return expert_embeddings_; }

 private:
  XmoeOptions options_;
  torch::nn::Linear projection_{nullptr};
  torch::Tensor expert_embeddings_;  // [E, d_e]
};

}  // namespace moelab
