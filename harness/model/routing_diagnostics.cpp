// Router diagnostics and the routing probe's measures (see routing_diagnostics.h).
#include "harness/model/routing_diagnostics.h"

#include <algorithm>
#include <limits>

namespace moelab {

std::vector<std::pair<std::string, torch::Tensor>> selection_diagnostics(const torch::Tensor& probs,
                                                                          const torch::Tensor& token,
                                                                          const torch::Tensor& expert) {
  const auto p = probs.detach().to(torch::kFloat);  // [T, C]
  auto selected = torch::zeros_like(p, p.options().dtype(torch::kBool))
                      .index_put_({token, expert}, torch::ones({token.numel()}, p.options().dtype(torch::kBool)));  // [T, C]
  const double inf = std::numeric_limits<float>::infinity();
  auto min_selected = p.masked_fill(selected.logical_not(), inf).amin(-1);  // [T]
  auto max_unselected = p.masked_fill(selected, -inf).amax(-1);             // [T]
  auto has_margin = selected.any(-1).logical_and(selected.logical_not().any(-1));  // [T]
  std::vector<std::pair<std::string, torch::Tensor>> metrics;
  if (has_margin.any().item<bool>()) {
    auto margin = (min_selected - max_unselected) / min_selected.abs().clamp_min(1e-12);  // [T]
    metrics.emplace_back("topk_margin", margin.masked_select(has_margin).mean());
  }
  auto mass = (p * selected).sum(-1) / p.sum(-1).clamp_min(1e-12);  // [T]
  metrics.emplace_back("selected_mass", mass.mean());
  return metrics;
}

torch::Tensor effective_rank(const torch::Tensor& matrix) {
  const auto singular = at::linalg_svdvals(matrix.detach().to(torch::kDouble));  // [min(E, d)]
  const auto p = singular / singular.sum().clamp_min(1e-300);
  return torch::exp(-(p * torch::log(p.clamp_min(1e-300))).sum()).to(torch::kFloat);
}

torch::Tensor load_gini(const torch::Tensor& load) {
  const auto l = load.detach().to(torch::kFloat).flatten();  // [E]
  const double experts = static_cast<double>(l.numel());
  auto pair_gaps = (l.unsqueeze(0) - l.unsqueeze(1)).abs().sum();  // over ordered pairs
  return pair_gaps / (2.0 * experts * experts * l.mean().clamp_min(1e-12));
}

torch::Tensor mean_pairwise_cosine(const torch::Tensor& outputs) {
  const int64_t experts = outputs.size(0), tokens = outputs.size(1);
  if (experts < 2 || tokens == 0) return {};
  const auto y = outputs.detach().to(torch::kDouble);                        // [E, N, D]
  const auto unit = y / y.norm(2, -1, /*keepdim=*/true).clamp_min(1e-30);    // [E, N, D]
  // Per token: the sum over pairs i < j of u_i . u_j = (|sum_i u_i|^2 - sum_i |u_i|^2) / 2.
  const auto squared_norms = unit.pow(2).sum(std::vector<int64_t>{0, 2});      // [N]
  const auto pair_sum = (unit.sum(0).pow(2).sum(-1) - squared_norms) / 2;       // [N]
  const double pairs = static_cast<double>(experts * (experts - 1)) / 2;
  return (pair_sum / pairs).mean().to(torch::kFloat);
}

std::optional<double> normalized_mutual_information(const torch::Tensor& counts) {
  const auto joint = counts.detach().to(torch::kDouble);
  const double total = joint.sum().item<double>();
  if (!(total > 0)) return std::nullopt;
  const auto p = joint / total;                          // [A, B]
  const auto px = p.sum(1), py = p.sum(0);               // [A], [B]
  auto entropy = [](const torch::Tensor& q) {
    return -(q * torch::log(q.clamp_min(1e-300))).sum().item<double>();
  };
  const double hx = entropy(px), hy = entropy(py);
  if (hx + hy <= 1e-12) return std::nullopt;
  const auto outer = px.unsqueeze(1) * py.unsqueeze(0);  // [A, B]
  const auto terms = p * (torch::log(p.clamp_min(1e-300)) - torch::log(outer.clamp_min(1e-300)));
  const double mutual = terms.masked_fill(p == 0, 0.0).sum().item<double>();
  return std::clamp(mutual / ((hx + hy) / 2), 0.0, 1.0);
}

torch::Tensor selected_sets(const torch::Tensor& token, const torch::Tensor& expert,
                            int64_t tokens) {
  const auto options = torch::TensorOptions(torch::kLong);
  const auto t = token.detach().to(torch::kCPU, torch::kLong), e = expert.detach().to(torch::kCPU, torch::kLong);
  if (t.numel() == 0) return torch::full({tokens, 0}, -1, options);
  const auto per_token = torch::bincount(t, {}, tokens);                      // [T]
  const int64_t width = per_token.max().item<int64_t>();
  const auto order = std::get<1>(torch::sort(t * (e.max().item<int64_t>() + 1) + e));  // token, then expert
  const auto sorted_token = t.index_select(0, order), sorted_expert = e.index_select(0, order);
  const auto offsets = per_token.cumsum(0) - per_token;                      // [T]
  const auto column = torch::arange(t.numel(), options) - offsets.index_select(0, sorted_token);  // [A]
  return torch::full({tokens, width}, -1, options).index_put_({sorted_token, column}, sorted_expert);
}

torch::Tensor changed_share(const torch::Tensor& before, const torch::Tensor& after) {
  const int64_t width = std::max(before.size(1), after.size(1));
  auto pad = [width](const torch::Tensor& sets) {  // [T, S] -> [T, width] with -1 columns
    return torch::constant_pad_nd(sets, {0, width - sets.size(1)}, -1);
  };
  return pad(before).ne(pad(after)).any(-1).to(torch::kFloat).mean();
}

}  // namespace moelab
