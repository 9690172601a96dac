// `soft_moe` (Puigcerver et al. 2023), for vision: every expert processes `slots` slots per
// image, each slot a convex mixture of the image's tokens (dispatch = softmax over tokens of
// x·Φ), and every token's output a convex mixture of the slot outputs (combine = softmax over
// slots). Fully differentiable, nothing dropped. The softmax over tokens mixes a whole
// sequence, so it is refused in causal (LM) models.
#pragma once

#include "harness/core/fields.h"
#include "routers/router.h"

namespace moelab {

struct SoftMoeOptions {
  int64_t slots = 1;

  template <class V>
  void visit(V& v) { v(slots, "slots", "slots per expert (per image)", at_least(1)); }
  void check(const RouterShape&) const {}
};

class SoftMoeRouter : public Router {
 public:
  using Options = SoftMoeOptions;
  SoftMoeRouter(const SoftMoeOptions& options, const RouterShape& shape);
  RouteResult route(const torch::Tensor& x, const RouteContext& ctx) override;

 private:
  SoftMoeOptions options_;
  torch::Tensor slot_params_;  // Φ [D, E*S]
};

}  // namespace moelab
