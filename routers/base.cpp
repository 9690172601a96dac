// BASE layers: balanced top-1 assignment by auction.
#include "routers/base.h"

#include <algorithm>
#include <deque>
#include <limits>
#include <numeric>
#include <queue>

namespace moelab {

torch::Tensor balanced_assignment(const torch::Tensor& scores_in, int64_t max_bids_per_token) {
  auto scores = scores_in.detach().to(torch::kCPU, torch::kFloat).contiguous();
  const int64_t tokens = scores.size(0), experts = scores.size(1);
  auto s = scores.accessor<float, 2>();
  std::vector<int64_t> capacity(static_cast<size_t>(experts), tokens / experts);
  for (int64_t e = 0; e < tokens % experts; ++e) ++capacity[static_cast<size_t>(e)];

  const float eps = std::max(1e-4f, (scores.max().item<float>() - scores.min().item<float>()) / 50);
  using Bid = std::pair<float, int64_t>;  // (bid, token), min-heap per expert
  std::vector<std::priority_queue<Bid, std::vector<Bid>, std::greater<Bid>>> held(experts);
  std::vector<float> price(static_cast<size_t>(experts), 0.0f);
  std::vector<int64_t> assigned(static_cast<size_t>(tokens), -1);
  std::deque<int64_t> waiting(static_cast<size_t>(tokens));
  std::iota(waiting.begin(), waiting.end(), 0);

  int64_t bids = 0;
  const int64_t budget = max_bids_per_token * tokens;
  while (!waiting.empty() && bids < budget) {
    const int64_t t = waiting.front();
    waiting.pop_front();
    int64_t best = 0;
    float best_value = -std::numeric_limits<float>::infinity(), second_value = best_value;
    for (int64_t e = 0; e < experts; ++e) {
      const float value = s[t][e] - price[static_cast<size_t>(e)];
      if (value > best_value) {
        second_value = best_value;
        best_value = value;
        best = e;
      } else if (value > second_value) {
        second_value = value;
      }
    }
    const float increment = experts > 1 ? best_value - second_value + eps : eps;
    auto& heap = held[static_cast<size_t>(best)];
    heap.push({price[static_cast<size_t>(best)] + increment, t});
    assigned[static_cast<size_t>(t)] = best;
    if (static_cast<int64_t>(heap.size()) > capacity[static_cast<size_t>(best)]) {
      const int64_t outbid = heap.top().second;
      heap.pop();
      assigned[static_cast<size_t>(outbid)] = -1;
      waiting.push_back(outbid);
    }
    if (static_cast<int64_t>(heap.size()) == capacity[static_cast<size_t>(best)]) {
      price[static_cast<size_t>(best)] = heap.top().first;
    }
    ++bids;
  }
  // Budget exhausted: the rest go greedily to their best expert with room.
  for (int64_t t : waiting) {
    int64_t best = -1;
    for (int64_t e = 0; e < experts; ++e) {
      if (static_cast<int64_t>(held[static_cast<size_t>(e)].size()) < capacity[static_cast<size_t>(e)] &&
          (best < 0 || s[t][e] > s[t][best])) {
        best = e;
      }
    }
    held[static_cast<size_t>(best)].push({0.0f, t});
    assigned[static_cast<size_t>(t)] = best;
  }
  return torch::tensor(assigned, torch::kLong);
}

BaseRouter::BaseRouter(const BaseOptions& options, const RouterShape& shape)
    : LogitRouter(shape), options_(options) {
  torch::NoGradGuard no_grad;
  torch::nn::init::orthogonal_(gate_->weight, 0.1);
}

RouteResult BaseRouter::decide(const torch::Tensor& logits, const RouteContext& ctx) {
  torch::Tensor expert;  // [T]
  expert = logits.argmax(-1);
  if (ctx.training) {  // the balanced assignment covers the real tokens only
    auto assigned = balanced_assignment(real_rows(logits, ctx), options_.max_bids_per_token);
    expert = ctx.valid.defined()
                 ? expert.index_copy(0, ctx.valid.to(logits.device()).nonzero().reshape({-1}),
                                     assigned.to(logits.device()))
                 : assigned.to(logits.device());
  }
  auto indices = expert.unsqueeze(1);  // [T, 1]
  RouteResult result = RouteResult::from_topk(indices, torch::sigmoid(logits.gather(1, indices)));
  result.logits = logits;
  result.probs = torch::softmax(logits, -1);
  return result;
}

}  // namespace moelab
