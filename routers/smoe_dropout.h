// `smoe_dropout` (Chen et al. 2023): a randomly initialised router that is never trained,
// with the number of active experts raised linearly over training from k_start to k_end
// (defaults E/2 -> E, the reference script's 8 -> 16 for E = 16). At evaluation any k can be
// used ("self-slimmable"): eval_k, default k_end. Gates: softmax over the chosen logits.
#pragma once

#include "harness/core/fields.h"
#include "routers/router.h"

namespace moelab {

struct SmoeDropoutOptions {
  int64_t k_start = 0;
  int64_t k_end = 0;
  int64_t ramp_steps = 1000;
  int64_t eval_k = 0;

  template <class V>
  void visit(V& v) {
    v(k_start, "k_start", "experts per token at step 1; 0 = E/2", at_least(0));
    v(k_end, "k_end", "experts per token after the ramp; 0 = E", at_least(0));
    v(ramp_steps, "ramp_steps", "steps over which k rises linearly", at_least(1));
    v(eval_k, "eval_k", "experts per token at evaluation; 0 = k_end", at_least(0));
  }
  void check(const RouterShape& shape) const;
};

class SmoeDropoutRouter : public LogitRouter {
 public:
  using Options = SmoeDropoutOptions;
  SmoeDropoutRouter(const SmoeDropoutOptions& options, const RouterShape& shape);
  RouteResult decide(const torch::Tensor& logits, const RouteContext& ctx) override;
  int64_t k_at(const RouteContext& ctx) const;

 private:
  int64_t k_start_, k_end_, eval_k_, ramp_steps_;
};

}  // namespace moelab
