// Top-k margin, selected mass and load Gini (see routing_diagnostics.h).
#include "harness/model/routing_diagnostics.h"

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

}  // namespace moelab
