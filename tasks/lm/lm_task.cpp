// Language-modelling task and its decoder-only transformer.
#include "tasks/lm/lm_task.h"

#include <fmt/format.h>

#include <cmath>
#include <filesystem>

#include "harness/model/flops.h"
#include "harness/model/init_streams.h"
#include "harness/core/rng.h"

namespace moelab {
namespace {

torch::Tensor to_tensor(const std::vector<int64_t>& ids) {
  return torch::tensor(ids, torch::kLong);
}

// `count` windows of length + 1 tokens of `ids` at starts drawn from `rng`: inputs and their
// next tokens, [B, L] each.
Batch random_windows(const torch::Tensor& ids, int64_t length, int64_t count, Rng& rng) {
  const int64_t starts = ids.size(0) - length;
  std::vector<torch::Tensor> windows;
  windows.reserve(static_cast<size_t>(count));
  for (int64_t b = 0; b < count; ++b) windows.push_back(ids.narrow(0, rng.below(starts), length + 1));
  auto block = torch::stack(windows);  // [B, L+1]
  return {block.narrow(1, 0, length), block.narrow(1, 1, length)};
}

}  // namespace

LmModelImpl::LmModelImpl(const RunConfig& config, int64_t vocab, int64_t seq_len) {
  const auto& model = config.model;
  init_stream("embed");
  embed_ = register_module("embed", torch::nn::Embedding(vocab, model.dim));
  torch::nn::init::normal_(embed_->weight, 0.0, 0.02);
  positions_ = register_parameter("positions", torch::randn({1, seq_len, model.dim}) * 0.02);
  backbone_ = register_module(
      "backbone", backbone_for(config, /*causal=*/true));
}

torch::Tensor LmModelImpl::logits(const torch::Tensor& tokens, RouteContext ctx) {
  const int64_t length = tokens.size(1);
  ctx.token_ids = tokens.reshape({-1});                        // [B*L]
  auto h = embed_(tokens) + positions_.narrow(1, 0, length);  // [B, L, D]
  h = backbone_(h, ctx);                                      // [B, L, D]
  if (ctx.record) {  // the tied output projection; the embedding is a lookup
    ctx.record->compute.add("embed_head", linear_flops(tokens.numel(), embed_->weight.size(1),
                                                       embed_->weight.size(0)));
  }
  return torch::matmul(h, embed_->weight.t());                // tied output [B, L, V]
}

torch::Tensor LmModelImpl::predict(const Batch& batch, const RouteContext& ctx) {
  auto out = logits(batch.input, ctx);     // [B, L, V]
  return out.reshape({-1, out.size(-1)});  // [B*L, V]
}

void LmTask::check(const LmOptions& options, const RunConfig&) {
  if (!std::filesystem::exists(options.data_path)) {
    throw ConfigError(fmt::format("task.data_path = '{}': no such file or folder (setup.sh "
                                  "fetches the gutenberg corpus to .data/gutenberg)",
                                  options.data_path));
  }
}

LmTask::LmTask(const LmOptions& options, const RunConfig& config)
    : options_(options), seed_(static_cast<uint64_t>(config.seed)) {
  text_ = load_corpus(options.corpus, options.data_path, options.include_bible);
  const bool pretokenised = options.corpus == "wikitext103";
  vocabulary_ = options.level == "word"
                    ? Vocabulary::words(text_.train, options.vocab_size, pretokenised)
                    : Vocabulary::bytes();
  for (const char* name : {"train", "val", "test"}) {
    const auto& ids = tokens(name);
    if (ids.size(0) < options.seq_len + 1) {
      throw Error(fmt::format("lm: the {} split of '{}' has {} tokens, fewer than seq_len + 1 = {}",
                              name, options.data_path, ids.size(0), options.seq_len + 1));
    }
  }
}

const torch::Tensor& LmTask::tokens(const std::string& split) {
  auto found = tokens_.find(split);
  if (found != tokens_.end()) return found->second;
  const SplitId id = SplitId::parse(split);
  const std::string* text = id.base == "train" ? &text_.train
                            : id.base == "val" ? &text_.val
                            : id.base == "test" ? &text_.test
                                                : nullptr;
  if (!text || !id.router.empty() || id.kind == SplitId::Kind::Corruption) {
    throw Error(fmt::format("lm task has no split '{}' (train, val, test, test:KIND:RATE)", split));
  }
  if (id.kind == SplitId::Kind::Plain) return tokens_[split] = to_tensor(vocabulary_.encode(*text));
  for (const auto& corruption : options_.corruptions.list) {
    if (corruption.label() == id.label) {
      const std::string corrupted = corrupt_text(*text, corruption, seed_);
      return tokens_[split] = to_tensor(vocabulary_.encode(corrupted));
    }
  }
  throw Error(fmt::format("lm task: split '{}' names no configured corruption", split));
}

std::shared_ptr<TaskModel> LmTask::build_model(const RunConfig& config) {
  return std::make_shared<LmModelImpl>(config, vocabulary_.size(), options_.seq_len);
}

Batch LmTask::train_batch(int64_t step, int64_t batch_size) {
  Rng rng = Rng::keyed({seed_, fnv1a("lm batch"), static_cast<uint64_t>(step)});
  return random_windows(tokens("train"), options_.seq_len, batch_size, rng);
}

Batch LmTask::probe_batch(int64_t count) {
  Rng rng = Rng::keyed({seed_, fnv1a("probe")});
  return random_windows(tokens("val"), options_.seq_len, count, rng);
}

MetricValues LmTask::evaluate(TaskModel& model, const std::string& split,
                              const RunConfig& config, torch::Device device) {
  const torch::Tensor& ids = tokens(split);
  auto& lm = dynamic_cast<LmModelImpl&>(model);
  const int64_t length = options_.seq_len;
  // Non-overlapping windows of seq_len + 1 tokens; with eval.max_examples, that many spread
  // evenly over the split (not just its first book). Every target is predicted once.
  const int64_t available = (ids.size(0) - 1) / length;
  int64_t windows = available;
  if (config.eval.max_examples > 0) windows = std::min(windows, config.eval.max_examples);
  const int64_t stride = available / windows;
  torch::NoGradGuard no_grad;
  RouteContext ctx;
  ctx.training = false;
  ctx.seed = config.seed;
  double nll_sum = 0.0;
  const int64_t per_batch = std::max<int64_t>(1, config.eval.batch_size / length);
  for (int64_t first = 0; first < windows; first += per_batch) {
    const int64_t count = std::min(per_batch, windows - first);
    std::vector<torch::Tensor> rows;
    for (int64_t w = first; w < first + count; ++w) rows.push_back(ids.narrow(0, w * stride * length, length + 1));
    auto block = torch::stack(rows);                              // [b, L+1]
    auto inputs = block.narrow(1, 0, length).to(device);          // [b, L]
    auto targets = block.narrow(1, 1, length).to(device);         // [b, L]
    auto out = lm.logits(inputs, ctx);                            // [b, L, V]
    nll_sum += torch::nn::functional::cross_entropy(
                   out.reshape({-1, out.size(-1)}), targets.reshape({-1}),
                   torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                   .item<double>();
  }
  const double loss = nll_sum / static_cast<double>(windows * length);
  MetricValues metrics = {{"loss", loss}};
  if (vocabulary_.is_words()) {
    metrics.emplace_back("ppl", std::exp(loss));
  } else {
    metrics.emplace_back("bpc", loss / std::log(2.0));
  }
  return metrics;
}

const TaskMetrics& LmTask::metrics() {
  static const TaskMetrics declared{
      "lm",
      {{"loss", Better::Lower, "mean cross-entropy per token (nats)"},
       {"bpc", Better::Lower, "bits per character (level: char)"},
       {"ppl", Better::Lower, "perplexity (level: word)"}},
      {"bpc", "ppl"},
      {}};
  return declared;
}

std::vector<std::string> LmTask::final_splits() const {
  std::vector<std::string> splits = {"val", "test"};
  for (const auto& corruption : options_.corruptions.list) {
    splits.push_back(SplitId::test_variant(corruption.label()).text());
  }
  return splits;
}

}  // namespace moelab
