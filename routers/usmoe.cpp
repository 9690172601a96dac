// Unified token/expert-choice routing with global top-c per group.
#include "routers/usmoe.h"

#include <algorithm>
#include <cmath>

#include "routers/topk.h"

namespace moelab {

void UsmoeOptions::check(const RouterShape& shape) const { check_k(k, shape); }

UsmoeRouter::UsmoeRouter(const UsmoeOptions& options, const RouterShape& shape)
    : LogitRouter(shape), options_(options) {}

RouteResult UsmoeRouter::decide(const torch::Tensor& logits, const RouteContext& ctx) {
  const int64_t tokens = logits.size(0), experts = logits.size(1);
  auto scores = (1.0 - options_.beta) * torch::softmax(logits, -1) +
                options_.beta * (2.0 / experts) * torch::sigmoid(logits);  // S [T, E]
  auto groups = routing_groups(tokens, ctx, options_.group).to(logits.device());  // [G, Tg]
  const int64_t group_count = groups.size(0), group_tokens = groups.size(1);
  const int64_t pairs = std::clamp<int64_t>(std::llround(options_.k * group_tokens), 1,
                                            group_tokens * experts);  // c
  // Padding gets score -1, below every real pair: chosen only when a group has no more.
  auto selectable = scores.detach().masked_fill(real_token_column(tokens, ctx, scores.options()) == 0, -1.0);
  auto grouped = selectable.index_select(0, groups.reshape({-1}))
                     .view({group_count, group_tokens * experts});  // [G, Tg*E]
  auto chosen = std::get<1>(torch::topk(grouped, pairs, -1));        // [G, c] flat pair ids
  auto local_token = chosen.div(experts, "floor");                   // [G, c]
  auto token = groups.gather(1, local_token).reshape({-1});          // [G*c]
  auto expert = chosen.remainder(experts).reshape({-1});             // [G*c]
  // The official code selects on S and normalises only the combine weights, by each token's
  // sum over all experts; who an over-full expert keeps still follows S.
  auto gates = options_.normalize ? scores / scores.sum(-1, true) : scores;  // [T, E]
  RouteResult result = RouteResult::from_pairs(token, expert, gates);
  result.priority = scores.detach().index({result.token, result.expert});
  result.logits = logits;
  result.probs = torch::softmax(logits, -1);
  return result;
}

}  // namespace moelab
