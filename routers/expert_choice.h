// `expert_choice` (Zhou et al. 2022): in every routing group each expert takes its
// ceil(k * Tg / E) highest-scoring tokens (softmax over experts), so load is perfectly
// balanced and a token gets 0..E experts; gate = the token's softmax probability for that
// expert. Non-causal within a group: causal LMs must group by position (group: auto does).
#pragma once

#include "harness/core/fields.h"
#include "routers/router.h"

namespace moelab {

struct ExpertChoiceOptions {
  double k = 2.0;
  std::string group = "auto";

  template <class V>
  void visit(V& v) {
    v(k, "k", "average experts per token: each expert takes ceil(k * Tg / E) tokens",
      greater_than(0));
    v(group, "group",
      "routing group: auto (position if causal, else sequence), sequence, position, all",
      one_of({"auto", "sequence", "position", "all"}));
  }
  void check(const RouterShape& shape) const;
};

class ExpertChoiceRouter : public LogitRouter {
 public:
  using Options = ExpertChoiceOptions;
  ExpertChoiceRouter(const ExpertChoiceOptions& options, const RouterShape& shape);
  RouteResult decide(const torch::Tensor& logits, const RouteContext& ctx) override;

 private:
  ExpertChoiceOptions options_;
};

}  // namespace moelab
