// Fixed random hash routing.
#include "routers/hash.h"

#include <numeric>

#include "harness/core/rng.h"
#include "routers/topk.h"

namespace moelab {

void HashOptions::check(const RouterShape& shape) const { check_k(k, shape); }

HashRouter::HashRouter(const HashOptions& options, const RouterShape& shape) : options_(options) {
  auto table = torch::empty({options.buckets, options.k}, torch::kLong);
  auto data = table.accessor<int64_t, 2>();
  Rng rng = Rng::keyed({static_cast<uint64_t>(shape.seed), fnv1a("hash table"),
                        static_cast<uint64_t>(shape.layer)});
  std::vector<int64_t> experts(static_cast<size_t>(shape.experts));
  for (int64_t b = 0; b < options.buckets; ++b) {
    std::iota(experts.begin(), experts.end(), 0);
    for (int64_t j = 0; j < options.k; ++j) {  // partial Fisher-Yates: k distinct experts
      const int64_t pick = j + rng.below(shape.experts - j);
      std::swap(experts[j], experts[pick]);
      data[b][j] = experts[j];
    }
  }
  table_ = register_buffer("table", table);
}

RouteResult HashRouter::route(const torch::Tensor& x, const RouteContext& ctx) {
  const int64_t tokens = x.size(0);
  const bool use_ids = options_.key == "token" || (options_.key == "auto" && ctx.token_ids.defined());
  if (use_ids && !ctx.token_ids.defined()) {
    throw Error("hash router: key = token needs token ids, and this task has none (use key: position)");
  }
  torch::Tensor keys;  // [T]
  if (use_ids) {
    keys = ctx.token_ids.reshape({-1}).to(torch::kLong);
  } else {
    const int64_t length = ctx.group_size > 0 ? ctx.group_size : tokens;
    keys = torch::arange(tokens, torch::kLong).remainder(length);
  }
  auto indices = table_.index_select(0, keys.remainder(options_.buckets).to(table_.device()));  // [T, k]
  auto gates = torch::full({tokens, options_.k}, 1.0 / options_.k, x.options().dtype(torch::kFloat));
  return RouteResult::from_topk(indices.to(x.device()), gates);
}

}  // namespace moelab
