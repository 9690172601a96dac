// `noisy_topk` (Shazeer et al. 2017): H = z + eps * softplus(x W_noise) with eps ~ N(0, 1)
// during training; gates = softmax over the k largest H (KeepTopK); importance loss
// w_imp * CV(sum of gates)^2 and load loss w_load * CV(smooth load)^2, where the smooth load
// uses P(x, e) = Phi((z_e - kth_excluding(H, e)) / softplus(x W_noise)_e).
// W_g and W_noise start at zero (the paper's initialisation).
#pragma once

#include "harness/core/fields.h"
#include "routers/router.h"

namespace moelab {

struct NoisyTopKOptions {
  int64_t k = 2;
  bool noise = true;
  double importance_coef = 0.1;
  double load_coef = 0.1;
  double aux_coef = 0.0;
  double z_coef = 0.0;
  double ortho_coef = 0.0;

  template <class V>
  void visit(V& v) {
    v(k, "k", "experts per token", at_least(1));
    v(noise, "noise", "add the trainable Gaussian noise during training");
    v(importance_coef, "importance_coef", "w_imp: weight of CV(importance)^2", at_least(0));
    v(load_coef, "load_coef", "w_load: weight of CV(smooth load)^2 (needs noise)", at_least(0));
    v(aux_coef, "aux_coef", "weight of the Switch load-balancing loss", at_least(0));
    v(z_coef, "z_coef", "weight of the ST-MoE router z-loss", at_least(0));
    v(ortho_coef, "ortho_coef", kOrthoHelp, ortho_spec());
  }
  void check(const RouterShape& shape) const;
};

class NoisyTopKRouter : public LogitRouter {
 public:
  using Options = NoisyTopKOptions;
  NoisyTopKRouter(const NoisyTopKOptions& options, const RouterShape& shape);
  RouteResult route(const torch::Tensor& x, const RouteContext& ctx) override;
  // From logits alone the noise network's output is taken as 0 (its value at initialisation).
  RouteResult decide(const torch::Tensor& logits, const RouteContext& ctx) override;
  double ortho_coef() const override { return options_.ortho_coef; }
  RouteResult decide_with_noise(const torch::Tensor& logits, const torch::Tensor& noise_logits,
                                const RouteContext& ctx);

 private:
  NoisyTopKOptions options_;
  torch::nn::Linear noise_gate_{nullptr};
};

}  // namespace moelab
