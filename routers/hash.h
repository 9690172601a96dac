// `hash` (Roller et al. 2021): a fixed random table maps a token id (or, for tasks without
// token ids such as images, the token's position in its sequence) to k distinct experts.
// Nothing is learned; gates are 1/k. The table is seeded by (run seed, layer).
#pragma once

#include "harness/core/fields.h"
#include "routers/router.h"

namespace moelab {

struct HashOptions {
  int64_t k = 1;
  int64_t buckets = 65536;
  std::string key = "auto";

  template <class V>
  void visit(V& v) {
    v(k, "k", "experts per token", at_least(1));
    v(buckets, "buckets", "table size; keys are taken modulo this", at_least(1));
    v(key, "key",
      "what is hashed: token (ids; LM), position (within the sequence/image), auto (token "
      "ids when the task has them)",
      one_of({"auto", "token", "position"}));
  }
  void check(const RouterShape& shape) const;
};

class HashRouter : public Router {
 public:
  using Options = HashOptions;
  HashRouter(const HashOptions& options, const RouterShape& shape);
  RouteResult route(const torch::Tensor& x, const RouteContext& ctx) override;

 private:
  HashOptions options_;
  torch::Tensor table_;  // [buckets, k] int64 buffer
};

}  // namespace moelab
