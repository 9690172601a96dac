// `usmoe`: Unified Sparse MoE (arXiv 2503.22996). Unified score
//   S = (1 - beta) * softmax(z) + beta * (2/E) * sigmoid(z)
// (token-choice and expert-choice views; both equal 1/E at z = 0). In every routing group the
// c = round(k * Tg) largest (token, expert) pairs are selected jointly, so a token gets 0..E
// experts and k is the average (fractional k allowed); gate = S itself, or with `normalize`
// S / sum_e S[t, e] after the selection (as the official code: the selection uses S).
// Groups: one sequence/image, or for causal LMs the same position across the batch, which
// never lets a token's routing depend on later tokens of its own sequence.
#pragma once

#include "harness/core/fields.h"
#include "routers/router.h"

namespace moelab {

struct UsmoeOptions {
  double k = 2.0;
  double beta = 0.5;
  std::string group = "auto";
  bool normalize = false;

  template <class V>
  void visit(V& v) {
    v(k, "k", "average experts per token k̄ (fractional allowed): c = round(k * Tg) pairs",
      greater_than(0));
    v(beta, "beta", "weight of the expert-choice (sigmoid) part of the unified score",
      in_range(0, 1));
    v(group, "group",
      "routing group: auto (position if causal, else sequence), sequence, position, all",
      one_of({"auto", "sequence", "position", "all"}));
    v(normalize, "normalize",
      "after selecting on S, divide each chosen gate by its token's score sum over all experts");
  }
  void check(const RouterShape& shape) const;
};

class UsmoeRouter : public LogitRouter {
 public:
  using Options = UsmoeOptions;
  UsmoeRouter(const UsmoeOptions& options, const RouterShape& shape);
  RouteResult decide(const torch::Tensor& logits, const RouteContext& ctx) override;

 private:
  UsmoeOptions options_;
};

}  // namespace moelab
