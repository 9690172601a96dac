// Router diagnostics the MoE layer measures the same way for every router that makes
// token-expert assignments and reports its probabilities (docs/methods.md, "Router
// diagnostics"): how decisively each token chose, how much of its probability it kept, and
// how unequal the experts' loads are.
#pragma once

#include <torch/types.h>

#include <string>
#include <utility>
#include <vector>

namespace moelab {

// `probs` [T, C] the router's probabilities (rows need not sum to 1), `token` and `expert` [A]
// its assignments (the selected set of each token). Scalars:
//   topk_margin    mean over tokens with selected and unselected columns of
//                  (min selected p - max unselected p) / min selected p
//   selected_mass  mean over tokens of sum selected p / sum p
// A token with every column selected has no margin; none at all: no topk_margin.
std::vector<std::pair<std::string, torch::Tensor>> selection_diagnostics(const torch::Tensor& probs,
                                                                          const torch::Tensor& token,
                                                                          const torch::Tensor& expert);

// Effective rank (Roy & Vetterli 2007) of a matrix [E, d]: exp of the entropy of its singular
// values normalised to sum 1; from 1 (rank one: the experts' router rows collapsed onto one
// direction) to min(E, d). 0-dim.
torch::Tensor effective_rank(const torch::Tensor& matrix);

// Gini coefficient of a load vector [E] (sum over pairs |l_i - l_j| / (2 E^2 mean)): 0 when
// equal, (E - 1) / E when one expert takes everything. 0-dim.
torch::Tensor load_gini(const torch::Tensor& load);

}  // namespace moelab
