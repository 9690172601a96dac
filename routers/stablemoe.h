// `stablemoe` (Dai et al. 2022), the code-base variant: stage 1 routes by the scores
// s = x · ê_e against normalised expert centroids (orthogonal init, gain 0.32) — top-k,
// gate sigmoid(s) for k = 1 or a softmax over the chosen scores, Switch balance loss on softmax(s / 0.3) — while a light
// router (a linear map of the detached token representation, or a token-id embedding where
// the task has ids) is distilled by cross-entropy to copy the stage-1 top-1 choice. After
// stage1_steps optimizer steps the distilled router is frozen and decides the experts; the
// gates keep coming from the centroid scores. Stage-1 length has no published value:
// PROPOSAL 10% of a run, given here in steps.
#pragma once

#include "harness/core/fields.h"
#include "routers/router.h"

namespace moelab {

struct StableMoeOptions {
  int64_t k = 1;
  int64_t stage1_steps = 100;
  double aux_coef = 0.01;
  double distill_coef = 1.0;
  double balance_temperature = 0.3;
  int64_t vocab = 0;

  template <class V>
  void visit(V& v) {
    v(k, "k", "experts per token", at_least(1));
    v(stage1_steps, "stage1_steps", "optimizer steps of stage 1 (learn + distil)", at_least(0));
    v(aux_coef, "aux_coef", "weight of the balance loss in stage 1", at_least(0));
    v(distill_coef, "distill_coef", "weight of the distillation cross-entropy", at_least(0));
    v(balance_temperature, "balance_temperature", "temperature of the balance-loss softmax",
      greater_than(0));
    v(vocab, "vocab",
      "token-id embedding size of the distilled router; 0 = distil from the token "
      "representation (tasks without ids)",
      at_least(0));
  }
  void check(const RouterShape& shape) const;
};

class StableMoeRouter : public Router {
 public:
  using Options = StableMoeOptions;
  StableMoeRouter(const StableMoeOptions& options, const RouterShape& shape);
  RouteResult route(const torch::Tensor& x, const RouteContext& ctx) override;
  void on_step_end(int64_t step) override;
  void on_resume(int64_t steps_done) override { steps_done_ = steps_done; }
  bool in_stage1() const;
  torch::Tensor expert_embeddings() const override { return centroids_; }

 private:
  torch::Tensor distilled_logits(const torch::Tensor& x, const RouteContext& ctx);  // [T, E]
  StableMoeOptions options_;
  torch::Tensor centroids_;          // [E, D]
  torch::nn::Linear distill_linear_{nullptr};
  torch::nn::Embedding distill_embedding_{nullptr};
  int64_t steps_done_ = 0;           // optimizer steps seen; host-side, no device sync
};

}  // namespace moelab
