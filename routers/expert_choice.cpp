// Expert-choice routing: experts pick tokens within each group.
#include "routers/expert_choice.h"

#include <algorithm>
#include <cmath>

#include "routers/topk.h"

namespace moelab {

void ExpertChoiceOptions::check(const RouterShape& shape) const { check_k(k, shape); }

ExpertChoiceRouter::ExpertChoiceRouter(const ExpertChoiceOptions& options,
                                       const RouterShape& shape)
    : LogitRouter(shape), options_(options) {}

RouteResult ExpertChoiceRouter::decide(const torch::Tensor& logits, const RouteContext& ctx) {
  const int64_t tokens = logits.size(0), experts = logits.size(1);
  auto probs = torch::softmax(logits, -1);                                        // [T, E]
  auto groups = routing_groups(tokens, ctx, options_.group).to(logits.device());  // [G, Tg]
  const int64_t group_count = groups.size(0), group_tokens = groups.size(1);
  const auto capacity = std::clamp<int64_t>(
      static_cast<int64_t>(std::ceil(options_.k * group_tokens / experts)), 1, group_tokens);
  // Padding gets score -1, below every probability: no expert picks it while real tokens remain.
  auto selectable = probs.detach().masked_fill(real_token_column(tokens, ctx, probs.options()) == 0, -1.0);
  auto grouped = selectable.index_select(0, groups.reshape({-1}))
                     .view({group_count, group_tokens, experts})
                     .transpose(1, 2);                                 // [G, E, Tg]
  auto picked = std::get<1>(torch::topk(grouped, capacity, -1));      // [G, E, cap] local ids
  auto token = groups.unsqueeze(1).expand({group_count, experts, group_tokens})
                   .gather(2, picked)
                   .reshape({-1});                                     // [G*E*cap]
  auto expert = torch::arange(experts, token.options())
                    .view({1, experts, 1})
                    .expand({group_count, experts, capacity})
                    .reshape({-1});                                    // [G*E*cap]
  RouteResult result = RouteResult::from_pairs(token, expert, probs);
  result.logits = logits;
  result.probs = probs;
  return result;
}

}  // namespace moelab
