// `base` (BASE layers, Lewis et al. 2021): during training every token goes to exactly one
// expert and every expert takes T/E tokens (remainder spread over the first experts),
// maximising the total token-expert affinity h·w_e, solved by an auction algorithm
// (Bertsekas; eps = max(1e-4, (max - min)/50) as in fairseq). At evaluation each token takes
// its best expert (greedy argmax). Gate = sigmoid(h·w_e). Expert centroids start orthogonal
// with gain 0.1. No auxiliary loss.
#pragma once

#include "harness/core/fields.h"
#include "routers/router.h"

namespace moelab {

struct BaseOptions {
  int64_t max_bids_per_token = 100;

  template <class V>
  void visit(V& v) {
    v(max_bids_per_token, "max_bids_per_token",
      "auction budget; tokens still unassigned after T*this bids are placed greedily",
      at_least(1));
  }
  void check(const RouterShape&) const {}
};

// Balanced assignment maximising sum of scores: scores [T, E] (CPU, float) -> expert per
// token [T] int64, expert e receiving exactly capacity(e) = T/E (+1 for e < T mod E) tokens.
torch::Tensor balanced_assignment(const torch::Tensor& scores, int64_t max_bids_per_token);

class BaseRouter : public LogitRouter {
 public:
  using Options = BaseOptions;
  BaseRouter(const BaseOptions& options, const RouterShape& shape);
  RouteResult decide(const torch::Tensor& logits, const RouteContext& ctx) override;

 private:
  BaseOptions options_;
};

}  // namespace moelab
