// The run configuration: typed structs, each with one field list (see fields.h), plus
// loading (file + key=value overrides), cross-field validation, canonical dump and hash.
#pragma once

#include <string>
#include <vector>

#include "harness/core/fields.h"
#include "harness/config/moe_fields.h"
#include "harness/config/plugins.h"
#include "harness/config/train_budget.h"

namespace moelab {

struct MoeConfig {
  int64_t experts = 8;
  int64_t expert_hidden = 128;
  LayerSelection layers;
  double capacity_factor = 0.0;
  double eval_capacity_factor = -1.0;
  std::string drop_policy = "probs";
  double router_jitter = 0.0;
  NullExperts null_experts;
  int64_t shared_experts = 0;
  int64_t shared_hidden = 0;
  std::string shared_gate = "none";
  std::string router_grad = "sparse";
  std::string router_dtype = "fp32";

  template <class V>
  void visit(V& v) {
    v(experts, "experts", "number of FFN experts per MoE layer", in_range(1, 4096));
    v(expert_hidden, "expert_hidden", "hidden width of each expert FFN", at_least(1));
    v(layers, "layers",
      "which blocks have an MoE FFN: all | every_other (blocks 1, 3, ...) | none | comma list "
      "of block indices (e.g. \"0,2\"); the others get a dense FFN. One set has one spelling "
      "(\"2, 0\" is written 0,2, and 0,1,2,3 at depth 4 is all), so it has one run identity");
    v(capacity_factor, "capacity_factor",
      "expert capacity = ceil(capacity_factor * assignments / experts); 0 = dropless",
      at_least(0));
    v(drop_policy, "drop_policy",
      "which assignments an over-full expert keeps: probs (highest gate) or position (earliest)",
      one_of({"probs", "position"}));
    v(eval_capacity_factor, "eval_capacity_factor",
      "expert capacity in evaluation forwards (Megatron-Core's moe_expert_capacity_factor for "
      "inference); -1 = capacity_factor, 0 = dropless",
      hashed_unless(-1.0, at_least(-1)));
    v(router_jitter, "router_jitter",
      "multiplicative jitter on the router's input in training forwards, x * U(1 - eps, 1 + eps) "
      "(Switch Transformer; Megatron-Core's moe_input_jitter_eps); 0 = off",
      hashed_unless(0.0, in_range(0, 1)));
    v(null_experts, "null_experts",
      "MoE++ null experts beside the FFN experts, as kind:count list (\"zero:1,copy:1,"
      "constant:2\"): zero (outputs 0), copy (the token itself), constant (a learned vector); "
      "routers choose among experts + null experts, which cost no FFN compute. They follow the "
      "FFN experts in the order zero, copy, constant whatever order they are written in",
      hashed_unless(std::string("")));
    v(shared_experts, "shared_experts",
      "shared experts beside the routed ones (DeepSeekMoE, Qwen-MoE, Megatron-Core): FFNs every "
      "token passes through, added to the routed output, outside the load metrics; 0 = none",
      hashed_unless(int64_t{0}, in_range(0, 64)));
    v(shared_hidden, "shared_hidden",
      "hidden width of each shared expert; 0 = model.moe.expert_hidden",
      hashed_unless(int64_t{0}, at_least(0)));
    v(shared_gate, "shared_gate",
      "none, or sigmoid: the shared output scaled per token by sigmoid(x . w), w learned "
      "(Qwen-MoE's shared-expert gate)",
      hashed_unless(std::string("none"), one_of({"none", "sigmoid"})));
    v(router_grad, "router_grad",
      "sparse: the router learns from its selected experts only; dense (DenseMixer): the forward "
      "stays the sparse output, and a value-zero term gives the router the gradient of every "
      "expert's output through its probabilities (all experts run on every token, detached)",
      hashed_unless(std::string("sparse"), one_of({"sparse", "dense"})));
    v(router_dtype, "router_dtype",
      "precision of the router logits and of the decision made from them: fp32, or fp64 "
      "(Megatron-Core's moe_router_dtype; routers with linear logits, not hash, soft_moe, "
      "stablemoe or xmoe)",
      hashed_unless(std::string("fp32"), one_of({"fp32", "fp64"})));
  }
};

// FFN experts plus null experts: the choices a router has.
int64_t routed_experts(const MoeConfig& moe);

struct ModelConfig {
  int64_t dim = 64;
  int64_t depth = 4;
  int64_t heads = 4;
  int64_t ffn_hidden = 128;
  double dropout = 0.0;
  MoeConfig moe;

  template <class V>
  void visit(V& v) {
    v(dim, "dim", "model (residual stream) width", in_range(1, 65536));
    v(depth, "depth", "number of transformer blocks", in_range(1, 1024));
    v(heads, "heads", "attention heads (must divide dim)", at_least(1));
    v(ffn_hidden, "ffn_hidden", "hidden width of the dense FFN in non-MoE blocks", at_least(1));
    v(dropout, "dropout", "dropout probability on attention and FFN outputs", in_range(0, 0.9));
    v(moe, "moe", "mixture-of-experts layers");
  }
};

struct TrainConfig {
  int64_t steps = 500;
  int64_t batch_size = 128;
  std::string optimizer = "adamw";
  double lr = 1e-3;
  double weight_decay = 0.01;
  double beta1 = 0.9;
  double beta2 = 0.999;
  int64_t warmup_steps = 50;
  double min_lr_ratio = 0.1;
  double grad_clip = 1.0;
  int64_t log_every = 25;
  int64_t eval_every = 0;
  int64_t checkpoint_every = 0;
  int64_t trace_every = 0;
  int64_t grad_accum = 1;
  std::string aux_scope = "micro_batch";
  TrainBudget budget;
  std::string precision = "fp32";

  template <class V>
  void visit(V& v) {
    v(steps, "steps", "optimizer steps (with a budget: the most steps the run may take)", at_least(1));
    v(budget, "budget",
      "stop at a compute budget instead of train.steps: none | '<amount> steps|tokens|flops' "
      "(e.g. '2.5e12 flops'); the run ends at the first step whose cumulative train/flops "
      "(train/tokens) reaches the amount, and the learning-rate decay runs over the budget. "
      "A budget in steps is written as train.steps",
      hashed_unless(TrainBudget{}));
    v(batch_size, "batch_size", "examples per micro-batch (a step takes grad_accum of them)",
      at_least(1));
    v(grad_accum, "grad_accum",
      "micro-batches per optimizer step, their gradients summed: batch_size x grad_accum "
      "examples per step",
      hashed_unless(int64_t{1}, at_least(1)));
    v(aux_scope, "aux_scope",
      "tokens the Switch balance loss counts expert frequencies over: micro_batch, "
      "global_batch (every micro-batch of the step so far; needs grad_accum > 1) or sequence",
      hashed_unless(std::string("micro_batch"), one_of({"micro_batch", "global_batch", "sequence"})));
    v(precision, "precision",
      "fp32, or bf16: autocast to bfloat16 for the matrix products of attention, experts and "
      "dense parts, with the router, its losses and the task loss in fp32 and fp32 master "
      "weights (docs/design.md, Precision)",
      hashed_unless(std::string("fp32"), one_of({"fp32", "bf16"})));
    v(optimizer, "optimizer",
      "adam, adamw (decoupled weight decay) or sgd (heavy-ball momentum beta1, L2 weight decay)",
      one_of({"adam", "adamw", "sgd"}));
    v(lr, "lr", "peak learning rate", greater_than(0));
    v(weight_decay, "weight_decay", "weight decay", at_least(0));
    v(beta1, "beta1", "Adam beta1; sgd's momentum", in_range(0, 0.999999));
    v(beta2, "beta2", "Adam beta2", in_range(0, 0.999999));
    v(warmup_steps, "warmup_steps", "linear warm-up steps before the cosine decay", at_least(0));
    v(min_lr_ratio, "min_lr_ratio", "final learning rate as a fraction of lr", in_range(0, 1));
    v(grad_clip, "grad_clip", "clip the global gradient norm to this value; 0 = off", at_least(0));
    v(log_every, "log_every", "log training metrics every N steps", at_least(1));
    v(eval_every, "eval_every", "evaluate on validation every N steps; 0 = only at the end",
      at_least(0));
    v(trace_every, "trace_every",
      "record the routing of the probe examples (eval.probe_examples) every N steps and at the "
      "end: every token's experts and gates per layer, in files beside the checkpoint (moelab "
      "trace), and routing_fluctuation between traced steps; 0 = off",
      hashed_unless(int64_t{0}, at_least(0)));
    v(checkpoint_every, "checkpoint_every",
      "save a checkpoint every N steps (always at the end and on interruption); 0 = only then",
      at_least(0).unhashed());
  }
};

struct EvalConfig {
  int64_t batch_size = 1000;
  int64_t max_examples = 0;
  int64_t probe_examples = 64;
  PluginChoice router_override{"none", &make_router_options, nullptr};

  EvalConfig() { router_override.reset_options(); }

  template <class V>
  void visit(V& v) {
    v(batch_size, "batch_size", "examples per evaluation batch", at_least(1));
    v(max_examples, "max_examples", "cap on evaluated examples per split; 0 = all", at_least(0));
    v(probe_examples, "probe_examples",
      "examples of the val split (chosen by the seed) the routing probe routes at the end and "
      "at trace steps: spec_nmi, expert_cosine, traces; 0 = off",
      hashed_unless(int64_t{64}, at_least(0)));
    v(router_override, "router_override",
      "after training, also evaluate under this routing rule, reusing the trained router "
      "logits (training-free swap; logged as split@router); name none = off");
  }
};

// Dense -> MoE conversion (docs/methods.md). With a method set, the run takes a trained dense
// model (its parent) and turns every FFN of model.moe.layers into model.moe.experts experts
// of model.moe.expert_hidden neurons: split (MoEfication, DOT-MoE: ffn_hidden = experts x
// expert_hidden, a `dot_moe` router), upcycled (copies of the FFN or of its slices, any
// router), or pruned to router.k x expert_hidden neurons of a dense FFN (the MoE's active
// width); then it fine-tunes for train.steps and evaluates the result.
struct ConvertConfig {
  std::string method = "none";
  std::string parent = "auto";
  int64_t dense_steps = 1000;
  double dense_lr = 1e-3;
  double kl_coef = 1.0;
  int64_t calibration_tokens = 4096;
  int64_t kmeans_iters = 30;
  double tau_start = 1.0;
  double tau_end = 0.1;
  double tau_anneal = 0.2;
  int64_t sinkhorn_iters = 30;
  double affinity_std = 0.01;
  std::string affinity_init = "random";
  double affinity_lr_scale = 1.0;
  std::string split_grad = "fixed_duals";
  double drop_ratio = 0.5;

  template <class V>
  void visit(V& v) {
    v(method, "method",
      "none | random (LLaMA-MoE) | weight_cluster (balanced k-means on FFN input weights, "
      "MoEfication) | activation_cluster (balanced k-means on hidden activations, CMoE) | "
      "dot_moe (split learned by entropic transport + greedy rounding + straight-through) | "
      "copy (sparse upcycling: every expert a copy of the dense FFN) | granular (the FFN cut "
      "into g = ffn_hidden / expert_hidden slices, each copied experts / g times, outputs "
      "scaled so the MoE starts as the dense model) | drop_upcycling (copy or granular, then "
      "drop_ratio of each expert's neurons re-initialised) | prune (structured pruning: the "
      "router.k x expert_hidden most important neurons of each FFN kept, a dense model)",
      one_of({"none", "random", "weight_cluster", "activation_cluster", "dot_moe", "copy",
              "granular", "drop_upcycling", "prune"}));
    v(parent, "parent",
      "the dense model: auto (this config with dense FFNs, train.steps = dense_steps and "
      "train.lr = dense_lr; run first unless already done) or the id / config hash (prefix of "
      ">= 8 characters) of a done dense run in the same database");
    v(dense_steps, "dense_steps", "training steps of the auto parent", at_least(1));
    v(dense_lr, "dense_lr", "peak learning rate of the auto parent", greater_than(0));
    v(kl_coef, "kl_coef",
      "weight of KL(dense teacher || converted student) on the predictions while fine-tuning, "
      "for every method (PROPOSAL 1.0); 0 = task loss only",
      at_least(0));
    v(calibration_tokens, "calibration_tokens",
      "training tokens (from the first batches) whose FFN inputs drive activation_cluster and "
      "the reconstruction-error metrics",
      at_least(1));
    v(kmeans_iters, "kmeans_iters", "iteration cap of the balanced k-means", at_least(1));
    v(tau_start, "tau_start", "dot_moe: transport temperature at step 1 (PROPOSAL 1.0)",
      greater_than(0));
    v(tau_end, "tau_end", "dot_moe: temperature after annealing and at export (PROPOSAL 0.1)",
      greater_than(0));
    v(tau_anneal, "tau_anneal",
      "dot_moe: fraction of train.steps over which tau falls linearly (PROPOSAL 0.2)",
      in_range(0, 1));
    v(sinkhorn_iters, "sinkhorn_iters",
      "dot_moe: log-domain Sinkhorn iterations per forward pass (PROPOSAL 30)", at_least(1));
    v(affinity_std, "affinity_std",
      "dot_moe: neuron-expert affinities start ~ N(0, affinity_std^2) (PROPOSAL 0.01)",
      greater_than(0));
    v(affinity_init, "affinity_init",
      "dot_moe: where the learned split starts: random (the noise above) or a heuristic split "
      "(its expert's affinity raised by tau_end; a PROPOSAL: the paper leaves it open)",
      one_of({"random", "weight_cluster", "activation_cluster"}));
    v(affinity_lr_scale, "affinity_lr_scale",
      "dot_moe: the affinities learn this many times faster than the other parameters "
      "(a reparametrisation, A = scale x parameter; a PROPOSAL: the paper gives no value)",
      hashed_unless(1.0, greater_than(0)));
    v(split_grad, "split_grad",
      "dot_moe: gradient of the transport plan: fixed_duals (through A / tau with the Sinkhorn "
      "duals held fixed) or unrolled (through the Sinkhorn iterations too)",
      hashed_unless(std::string("fixed_duals"), one_of({"fixed_duals", "unrolled"})));
    v(drop_ratio, "drop_ratio",
      "drop_upcycling: the share of each expert's neurons re-initialised from the statistics "
      "of the dense weights (Drop-Upcycling's r; 0.5 is the paper's choice)",
      hashed_unless(0.5, in_range(0, 1)));
  }
};

// The families of convert.method: a neuron split of the FFN into experts (random,
// weight_cluster, activation_cluster, dot_moe), upcycling (copy, granular, drop_upcycling), or
// structured pruning into a narrower dense FFN (prune).
enum class ConversionKind { None, Split, Upcycle, Prune };
ConversionKind conversion_kind(const std::string& method);

struct RunConfig {
  std::string name = "run";
  int64_t seed = 0;
  std::string db = "results/moelab.db";
  std::string checkpoint_dir = "results/checkpoints";
  int64_t threads = 2;
  int64_t blas_threads = 1;
  std::string device = "cpu";
  PluginChoice task{"image", &make_task_options, nullptr};
  ModelConfig model;
  PluginChoice router{"topk", &make_router_options, nullptr};
  TrainConfig train;
  EvalConfig eval;
  ConvertConfig convert;

  RunConfig() {
    task.reset_options();
    router.reset_options();
  }

  template <class V>
  void visit(V& v) {
    v(name, "name", "a label for the run (not part of its identity)", not_hashed());
    v(seed, "seed", "seed for initialisation, data order, dropout and noise", at_least(0));
    v(db, "db", "results database: an SQLite file, or postgresql://user@host:port/name (password in ~/.pgpass or PGPASSWORD)", not_hashed());
    v(checkpoint_dir, "checkpoint_dir", "folder of the runs' checkpoints (<config hash>.pt)",
      not_hashed());
    v(threads, "threads", "LibTorch intra-op threads", in_range(1, 1024).unhashed());
    v(blas_threads, "blas_threads",
      "OpenBLAS threads; 1 avoids oversubscription beside LibTorch's own pool",
      in_range(1, 1024).unhashed());
    v(device, "device", "cpu, or cuda / cuda:N when built with CUDA");
    v(task, "task", "the task plugin and its options (moelab list tasks -v)");
    v(model, "model", "model architecture");
    v(router, "router", "the routing strategy and its options (moelab list routers -v)");
    v(train, "train", "optimisation");
    v(eval, "eval", "evaluation");
    v(convert, "convert", "turn a trained dense model into an MoE (MoEfication, DOT-MoE)",
      hashed_when_set());
  }
};

// Loads a run config from a YAML file plus key=value overrides, validates it completely.
// Throws ConfigError with file:line:column (or the override) on any problem.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides = {});
RunConfig parse_run_config(const std::string& yaml_text, const std::string& source_name,
                           const std::vector<std::string>& overrides = {});

// A "key=value" override and where it was written ("sweep.yaml:4:3"; "" = the command line).
struct Override {
  std::string assignment;
  std::string origin;
};
RunConfig parse_run_config_with_origins(const std::string& yaml_text,
                                        const std::string& source_name,
                                        const std::vector<Override>& overrides);

// Cross-field rules (heads divide dim, k <= experts, layer list in range, ...).
void validate(const RunConfig& config);

// Rewrites the values whose canonical spelling depends on other fields (model.moe.layers on
// model.depth) into that spelling; parse_run_config calls it after validate. Field-local
// spellings are canonical from the moment they are read (is_text_value in fields.h).
void normalize(RunConfig& config);

std::string canonical_yaml(const RunConfig& config);
std::string config_hash(const RunConfig& config);  // sha256 of the hashed fields' canonical dump

// The dense model a converting run starts from when convert.parent = auto: this config with
// dense FFNs (model.moe and the router reset to defaults), train.steps = convert.dense_steps,
// train.lr = convert.dense_lr, no conversion and no routing swap.
RunConfig dense_parent_config(const RunConfig& config);
// The axes label of a dense parent's run in the results database.
inline constexpr const char* kDenseParentLabel = "dense parent";

// Indices of the blocks with an MoE FFN, from model.moe.layers.
std::vector<int64_t> moe_layer_indices(const ModelConfig& model);

// convert.method = prune: the FFN width the pruned blocks keep, router.k x
// model.moe.expert_hidden (the active FFN neurons of the MoE the config describes).
int64_t pruned_ffn_hidden(const RunConfig& config);

}  // namespace moelab
