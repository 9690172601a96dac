// The router interface. A router only *decides* which experts see which tokens and with
// what weight; the MoE layer (harness/model/moe_layer.h) dispatches, runs experts, applies
// capacity, combines, and computes the shared routing metrics identically for all routers.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "harness/core/fields.h"

namespace moelab {

using NamedTensor = std::pair<std::string, torch::Tensor>;

// The work of forward passes: floating-point operations by part ("attention", "ffn",
// "experts", "router", "embed_head"; the counting rule of harness/model/flops.h) and the
// tokens the backbone processed. Host numbers from tensor shapes: counting never syncs a GPU.
struct ComputeTally {
  std::map<std::string, double> flops;
  int64_t tokens = 0;
  void add(const std::string& part, double value) { flops[part] += value; }
  void add(const ComputeTally& other);
  double total() const;
};

// What one MoE layer decided and measured on a probe forward (RouteContext::probe): the
// routing probe's raw material (harness/train/routing_probe.h).
struct LayerProbe {
  int64_t layer = 0;    // block index
  int64_t tokens = 0;   // T of the forward, padding included
  int64_t choices = 0;  // the columns an assignment can name: E FFN experts, then null experts
  // The assignments of the real tokens (null experts included), token-major; undefined for
  // soft routing, which has none.
  torch::Tensor token, expert, weight;  // [A] int64, int64, float
  // Mean over real tokens (the first kCosineTokens) and expert pairs of the cosine between
  // the FFN experts' outputs on the same token (expert_cosine, docs/methods.md). 0-dim.
  torch::Tensor expert_cosine;
};

// What the MoE layers report during one forward, collected explicitly through
// RouteContext::record by whoever asks (the trainer, a test, a benchmark).
struct RoutingRecord {
  torch::Tensor aux_loss;  // 0-dim sum of every layer's weighted aux losses; undefined if none ran
  // With collect_metrics: (block index, that layer's detached metrics) in forward order.
  std::vector<std::pair<int64_t, std::vector<NamedTensor>>> layer_metrics;
  ComputeTally compute;  // the forward's work, every forward (not only when collecting metrics)
  std::vector<LayerProbe> probes;  // with RouteContext::probe, in forward order

  void add_aux_loss(const torch::Tensor& loss) {
    aux_loss = aux_loss.defined() ? aux_loss + loss : loss;
  }
  // aux_loss, or a zero on `device` when no MoE layer ran.
  torch::Tensor total_aux_loss(torch::Device device) const {
    return aux_loss.defined() ? aux_loss.to(device) : torch::zeros({}, torch::TensorOptions(device));
  }
  // Per-layer metrics "l{block}/{name}" (the mean over a layer's forwards when it ran more
  // than once) and their means over the layers "{name}" (per-expert loads only per layer);
  // for the imbalance metrics also "{name}_p90" and "{name}_max" over the layers.
  std::vector<NamedTensor> routing_metrics() const;
};

struct RouteReplay;  // below

// The tokens a balance loss counts expert frequencies over (train.aux_scope).
enum class BalanceScope { MicroBatch, GlobalBatch, Sequence };

// Assignments per expert [E] of each layer (by block index) in the step's micro-batches so far.
using StepCounts = std::map<int64_t, torch::Tensor>;

struct RouteContext {
  bool training = false;
  int64_t step = 0;
  int64_t micro_batch = 0;  // of the step, with gradient accumulation
  int64_t layer = 0;
  int64_t seed = 0;
  torch::Tensor token_ids;   // [T] int64 where the task has token ids (LM); undefined otherwise
  torch::Tensor valid;       // [T] bool padding mask; undefined = every token is real
  int64_t group_size = 0;    // tokens per sequence / image (row-major [B, L] order); 0 = all T
  bool causal = false;       // a token must not be influenced by later tokens of its sequence
  bool collect_metrics = false;  // a logging step: compute the detached metrics
  bool probe = false;  // a routing-probe forward: each MoE layer adds a LayerProbe to record
  RouteReplay* replay = nullptr;  // evaluation-time routing replay: record or impose decisions
  RoutingRecord* record = nullptr;  // where the MoE layers report; nullptr = nobody asks
  BalanceScope balance_scope = BalanceScope::MicroBatch;
  StepCounts* step_counts = nullptr;  // kept by the trainer across a step's micro-batches
};

// A sparse assignment of A (token, expert, weight) triples; covers top-k, expert choice,
// variable k and tokens that get no expert at all.
struct RouteResult {
  torch::Tensor token;     // [A] int64
  torch::Tensor expert;    // [A] int64
  torch::Tensor weight;    // [A] float, combine weight (carries the router's gradient)
  torch::Tensor priority;  // [A] float, detached; who an over-full expert keeps (drop_policy=probs)
  torch::Tensor logits;    // [T, E] raw router logits, optional (router z metric)
  torch::Tensor probs;     // [T, E] full routing probabilities, optional (gate entropy)
  std::vector<NamedTensor> aux_losses;  // already weighted, differentiable scalars
  std::vector<NamedTensor> metrics;     // router-specific, detached, on the device
  double solver_flops = 0.0;  // the decision's work beyond the router's linear maps (Sinkhorn)

  // Soft routing (soft_moe) instead of assignments: slots are convex mixtures of the tokens
  // of a group. Both [G, Tg, E*S]; token rows follow `soft_tokens` [G, Tg].
  torch::Tensor soft_dispatch;  // softmax over tokens: slot inputs = dispatch^T x
  torch::Tensor soft_combine;   // softmax over slots: token outputs = combine * slot outputs
  torch::Tensor soft_tokens;

  // From per-token choices: indices [T, k] int64 and weights [T, k].
  static RouteResult from_topk(const torch::Tensor& indices, const torch::Tensor& weights);
  // From chosen (token [A], expert [A]) pairs in any order, gated by scores [T, E]: sorted
  // token-major like from_topk, weight = scores[token, expert].
  static RouteResult from_pairs(const torch::Tensor& token, const torch::Tensor& expert,
                                const torch::Tensor& scores);
};

// Routing replay (docs/methods.md, "Routing replay and flips"): in Record mode each MoE layer
// keeps the decision its router made; in Replay mode it skips its router and takes the
// decision recorded for its block, on an input of the same tokens (a corrupted image's patches
// with the clean image's routes). Everything after the decision — padding, null experts,
// capacity, dispatch, combine — runs as usual, so replaying an input's own decisions gives the
// ordinary forward's output bit for bit.
struct RouteReplay {
  enum class Mode { Record, Replay };
  struct Recorded {
    int64_t tokens = 0;  // T of the input it was made for
    RouteResult route;   // as the router returned it
  };
  Mode mode = Mode::Record;
  std::map<int64_t, Recorded> routes;  // block index -> decision
};

struct RouterShape {
  int64_t dim = 0;      // token representation width D
  int64_t experts = 0;  // E
  int64_t seed = 0;     // run seed, for routers with fixed random state (hash tables)
  int64_t layer = 0;    // block index of the MoE layer
  // LogitRouter: the dtype of the logits and of the decision (model.moe.router_dtype).
  torch::ScalarType logit_dtype = torch::kFloat;
};

class Router : public torch::nn::Module {
 public:
  // x: [T, D] token representations (LM tokens, image patches alike).
  virtual RouteResult route(const torch::Tensor& x, const RouteContext& ctx) = 0;
  // Called once after each optimizer step (gradient-free state such as selection biases).
  virtual void on_step_end(int64_t /*step*/) {}
  // The run continues from a checkpoint taken after `steps_done` optimizer steps: restore
  // host-side state kept outside parameters and buffers.
  virtual void on_resume(int64_t /*steps_done*/) {}
  // The rows that score the experts, [E, d] (a gate's weight, X-MoE's expert embeddings), for
  // the representation-collapse measure router_erank; undefined when the router has none.
  virtual torch::Tensor expert_embeddings() const { return {}; }
};

// A router whose decision is a function of linear router logits z = x W^T alone, computed in
// fp32 (or fp64: RouterShape::logit_dtype) whatever the model's precision.
// `moelab route` and evaluation-time routing swaps work on such routers through decide().
class LogitRouter : public Router {
 public:
  explicit LogitRouter(const RouterShape& shape);
  RouteResult route(const torch::Tensor& x, const RouteContext& ctx) override;
  // logits: [T, E] -> the decision.
  virtual RouteResult decide(const torch::Tensor& logits, const RouteContext& ctx) = 0;
  torch::nn::Linear gate() const { return gate_; }
  torch::Tensor expert_embeddings() const override { return gate_->weight; }
  // x [T, D] -> z [T, E] in the router's logit dtype.
  torch::Tensor logits(const torch::Tensor& x) const;
  // Weight of the orthogonality loss on the gate (the token-choice routers' ortho_coef).
  virtual double ortho_coef() const { return 0.0; }

 protected:
  // The decision plus, when ortho_coef() > 0, SimBal's loss "ortho" on the gate weights.
  RouteResult regularised(RouteResult result) const;

  torch::nn::Linear gate_{nullptr};
  torch::ScalarType logit_dtype_ = torch::kFloat;
};

// The token-choice routers' ortho_coef option: SimBal (Omi et al. 2025, arXiv 2506.14038),
// ortho_coef * || W W^T - I ||_1 for the gate W [E, D], which keeps the experts' router rows
// orthonormal (similarity-preserving) instead of pushing the loads apart directly.
inline constexpr const char* kOrthoHelp =
    "weight of the router orthogonality loss ||W W^T - I||_1 (SimBal); 0 = off";
inline Spec ortho_spec() { return hashed_unless(0.0, at_least(0)); }

// The token groups a group-wise router (usmoe, expert_choice) works in: [G, Tg] token
// indices. mode: "sequence" (one sequence/image per group), "position" (the same position
// across the batch: never mixes a token with later tokens of its own sequence), "all" (one
// group), "auto" (position when ctx.causal, else sequence).
torch::Tensor routing_groups(int64_t tokens, const RouteContext& ctx, const std::string& mode);

// Padding (ctx.valid): a padded token receives no expert and influences no real token's
// routing, no aux loss and no metric. The MoE layer drops padded tokens' assignments; routers
// keep them out of every statistic over tokens with these helpers (no-ops without padding).
// [T, 1] 1 for real tokens, 0 for padding, with `options`.
torch::Tensor real_token_column(int64_t tokens, const RouteContext& ctx,
                                const torch::TensorOptions& options);
// The rows of t [T, ...] that are real tokens.
torch::Tensor real_rows(const torch::Tensor& t, const RouteContext& ctx);
// Which of the assignments [A] (their token ids) belong to real tokens: [A] bool.
torch::Tensor real_assignments(const torch::Tensor& token, const RouteContext& ctx);
// Real tokens' assignments per expert: [E] float, exact counts, computed on the device
// without a host sync (no bincount or boolean indexing, which read sizes back on a GPU).
torch::Tensor real_expert_counts(const RouteResult& result, int64_t experts,
                                 const RouteContext& ctx);

// Uniform number in [0, 1) derived from (seed, step, salt): reproducible draws that a
// resumed run repeats.
double derived_uniform(int64_t seed, int64_t step, int64_t salt);

// Standard normal noise shaped like `like` [T, E], on its device, from the routing-noise
// stream of (seed, step, micro-batch, layer): drawn with the device's default generator
// reseeded for the draw and then restored to its state, so that a router's noise never
// shifts what dropout or another layer draws. Routers draw every random number through this
// (the router contract test checks that none touches the default generator's sequence):
// runs that differ only in the router then see the same dropout (docs/design.md#paired-runs).
torch::Tensor routing_noise_like(const torch::Tensor& like, const RouteContext& ctx);
// Uniform [0, 1) values shaped like `like`, drawn as routing_noise_like draws, from the stream
// (seed, `stream`, step, micro-batch, layer): the MoE layer's router-input jitter.
torch::Tensor routing_uniform_like(const torch::Tensor& like, const RouteContext& ctx,
                                   const std::string& stream);

}  // namespace moelab
