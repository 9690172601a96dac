// Router diagnostics the MoE layer measures the same way for every router that makes
// token-expert assignments and reports its probabilities (docs/methods.md, "Router
// diagnostics"): how decisively each token chose, how much of its probability it kept, and
// how unequal the experts' loads are; and the measures of specialisation, representation
// collapse and routing change that the routing probe computes from its records.
#pragma once

#include <torch/types.h>

#include <optional>
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

// Mean over tokens and unordered expert pairs of cos(y_i, y_j) for outputs [E, N, D] (expert i's
// output y_i on token n): 1 when the experts compute the same function on these tokens (a
// zero output counts as cosine 0). 0-dim; undefined when E < 2 or N = 0.
torch::Tensor mean_pairwise_cosine(const torch::Tensor& outputs);

// Normalised mutual information of two labellings from their joint counts [A, B]:
// I(X; Y) / ((H(X) + H(Y)) / 2), the arithmetic mean of the entropies (scikit-learn's
// default). 1 when either labelling determines the other and both have the same entropy;
// nullopt when both entropies are 0 (one cell: nothing to inform).
std::optional<double> normalized_mutual_information(const torch::Tensor& counts);

// The experts each of `tokens` tokens selected, from assignments token [A], expert [A] (any
// order): [T, S] int64, each row ascending and padded with -1; S = the most any token took.
torch::Tensor selected_sets(const torch::Tensor& token, const torch::Tensor& expert,
                            int64_t tokens);

// Share of rows whose selected set differs between two selected_sets() tables of the same
// tokens (their widths may differ). 0-dim.
torch::Tensor changed_share(const torch::Tensor& before, const torch::Tensor& after);

}  // namespace moelab
