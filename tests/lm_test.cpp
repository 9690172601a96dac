// The language-modelling task: corpus normalisation and splits, vocabularies, text
// corruptions, and a tiny training run on a corpus of our own.
#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <set>

#include "harness/run/runner.h"
#include "harness/store/store.h"
#include "tasks/lm/corpus.h"
#include "tasks/lm/lm_task.h"
#include "tasks/lm/text_corruptions.h"
#include "test_util.h"

namespace moelab {
namespace {

std::string words_of(const std::string& line) {
  std::string out;
  for (const auto& span : find_words(line)) out += line.substr(span.begin, span.end - span.begin) + "|";
  return out;
}

size_t count_of(const std::string& text, const std::string& needle) {
  size_t count = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++count;
  return count;
}

// A small corpus in the text_files layout: enough text for a few windows per split.
void write_corpus(const testing::TempDir& dir) {
  const std::string sentence =
      "The quick brown fox jumps over the lazy dog while the farmer watches the sheep.\n";
  std::string train, valid, test;
  for (int i = 0; i < 200; ++i) train += sentence;
  for (int i = 0; i < 20; ++i) valid += sentence;
  for (int i = 0; i < 20; ++i) test += sentence;
  std::ofstream(dir.file("train.txt")) << train;
  std::ofstream(dir.file("valid.txt")) << valid;
  std::ofstream(dir.file("test.txt")) << test;
}

}  // namespace

TEST_CASE("text normalisation: CRLF to LF, Latin-1 to UTF-8, UTF-8 kept", "[lm][data]") {
  CHECK(normalise_text("a\r\nb\r\n") == "a\nb\n");
  CHECK(normalise_text("lone\rcr") == "lone\rcr");
  CHECK(normalise_text("caf\xe9") == "caf\xc3\xa9");           // Latin-1 e-acute
  CHECK(normalise_text("caf\xc3\xa9") == "caf\xc3\xa9");       // already UTF-8
  CHECK(is_valid_utf8("plain ascii"));
  CHECK_FALSE(is_valid_utf8("\xc3"));  // truncated sequence
  CHECK_FALSE(is_valid_utf8("\xff"));
}

TEST_CASE("the Gutenberg split is fixed by file and covers every book once", "[lm][data]") {
  const std::string dir = std::string(MOELAB_SOURCE_DIR) + "/.data/gutenberg";
  TextSplits splits = load_corpus("gutenberg", dir, false);
  REQUIRE(splits.files.size() == 17);  // 18 books minus the held-out Bible
  const auto& split = gutenberg_split();
  CHECK(split.val == std::vector<std::string>{"austen-persuasion.txt", "shakespeare-macbeth.txt"});
  CHECK(split.test.size() == 3);
  // Sizes after normalisation (CRLF removed), pinned: a changed split or normaliser shows here.
  CHECK(splits.val.size() == 466292 + 100351);  // both LF-only, ending in a newline
  CHECK(splits.test.size() + splits.val.size() + splits.train.size() < 11793318 - 4332554);
  CHECK(is_valid_utf8(splits.train));
  CHECK(splits.train.find('\r') == std::string::npos);
  TextSplits with_bible = load_corpus("gutenberg", dir, true);
  CHECK(with_bible.train.size() > splits.train.size() + 4000000);
}

TEST_CASE("corpus loaders name the missing file and reject truncated enwik8", "[lm][data]") {
  testing::TempDir dir;
  CHECK_THROWS_WITH(load_corpus("text_files", dir.file(""), false),
                    Catch::Matchers::Contains("train.txt"));
  std::ofstream(dir.file("enwik8")) << "too short";
  CHECK_THROWS_WITH(load_corpus("enwik8", dir.file("enwik8"), false),
                    Catch::Matchers::Contains("100000000"));
}

TEST_CASE("word vocabulary keeps the most frequent words and maps the rest to <unk>", "[lm]") {
  const std::string text = "b b b a a c\nb a d\n";
  Vocabulary vocabulary = Vocabulary::words(text, 4, false);
  REQUIRE(vocabulary.size() == 4);
  CHECK(vocabulary.word_list() == std::vector<std::string>{"<unk>", "<eos>", "b", "a"});
  CHECK(vocabulary.encode("a b c\n") == std::vector<int64_t>{3, 2, 0, 1});
  CHECK(split_words("Hello, world's end.", false) ==
        std::vector<std::string>{"Hello", ",", "world's", "end", "."});
  CHECK(split_words("@-@ x", true) == std::vector<std::string>{"@-@", "x"});
  CHECK(Vocabulary::bytes().encode("A\n") == std::vector<int64_t>{65, 10});
}

TEST_CASE("AAA word swap replaces max(floor(rate * words), 1) non-stopwords per line",
          "[lm][corruption]") {
  CHECK(words_of("well-known e-mail, it's 3 o'clock!") == "well-known|e-mail|it's|3|o'clock|");
  std::string line;
  for (int i = 0; i < 200; ++i) line += (i % 2 ? "the " : "river ");
  const TextCorruption aaa{"aaa", 0.025};
  const std::string out = corrupt_text(line + "\nthe a of\nshort line\n\n", aaa, 7);
  const auto first = out.substr(0, out.find('\n'));
  CHECK(count_of(first, "AAA") == 5);         // floor(0.025 * 200) = 5
  CHECK(count_of(first, "the ") == 100);      // stopwords untouched
  CHECK(out.find("\nthe a of\n") != std::string::npos);  // only stopwords: unchanged
  CHECK((out.find("\nAAA line\n") != std::string::npos || out.find("\nshort AAA\n") != std::string::npos));
  CHECK(out.substr(out.size() - 2) == "\n\n");  // empty line kept
  CHECK(corrupt_text(line, aaa, 7) == corrupt_text(line, aaa, 7));
  CHECK(corrupt_text(line, aaa, 7) != corrupt_text(line, aaa, 8));
  CHECK(count_of(corrupt_text(line, {"aaa", 0.015}, 7), "AAA") == 3);
}

TEST_CASE("character noise edits exactly the chosen words", "[lm][corruption]") {
  const std::string line = "alpha bravo charlie delta";  // 4 words, rate 0.5 -> 2 words
  for (const char* kind : {"swap", "substitute", "delete", "insert", "qwerty", "char"}) {
    INFO(kind);
    const std::string out = corrupt_text(line, {kind, 0.5}, 3);
    const auto before = split_words(line, true), after = split_words(out, true);
    REQUIRE(after.size() == 4);
    int changed = 0;
    for (size_t i = 0; i < 4; ++i) {
      if (before[i] == after[i]) continue;
      ++changed;
      const auto diff = static_cast<long>(after[i].size()) - static_cast<long>(before[i].size());
      if (std::string(kind) == "delete") CHECK(diff == -1);
      if (std::string(kind) == "insert") CHECK(diff == 1);
      if (std::string(kind) == "swap" || std::string(kind) == "substitute" ||
          std::string(kind) == "qwerty") {
        CHECK(diff == 0);
      }
    }
    CHECK(changed <= 2);
    CHECK(changed >= 1);
  }
  // QWERTY keeps case and uses a neighbouring key.
  const std::string q = corrupt_text("Q", {"qwerty", 1.0}, 1);
  CHECK(std::set<std::string>{"Q"}.count(q) == 1);  // one-letter words are never chosen
  const std::string w = corrupt_text("Qq", {"qwerty", 1.0}, 1);
  CHECK((w[0] == 'Q' || std::string("WAS").find(w[0]) != std::string::npos));
}

TEST_CASE("text corruption specs are validated", "[lm][corruption]") {
  CHECK(TextCorruptions::parse("aaa:0.015,qwerty:0.1").list.size() == 2);
  CHECK(TextCorruptions::parse("aaa:0.015").list[0].label() == "aaa:0.015");
  CHECK_THROWS_WITH(TextCorruptions::parse("typo:0.1"), Catch::Matchers::Contains("typo:0.1"));
  CHECK_THROWS_AS(TextCorruptions::parse("aaa"), ConfigError);
  CHECK_THROWS_AS(TextCorruptions::parse("aaa:0"), ConfigError);
}

TEST_CASE("lm run: char and word level, clean and corrupted test in one run", "[lm][smoke]") {
  testing::TempDir dir;
  write_corpus(dir);
  for (const char* level : {"char", "word"}) {
    DYNAMIC_SECTION("level " << level) {
      RunConfig config = parse_run_config(
          R"(task: {name: lm, corpus: text_files, seq_len: 16, corruptions: "aaa:0.025,char:0.1"}
model: {dim: 16, depth: 2, heads: 2, moe: {experts: 4, expert_hidden: 16}}
train: {steps: 30, batch_size: 8, lr: 0.01, log_every: 10, warmup_steps: 2}
eval: {max_examples: 20}
)",
          "lm.yaml",
          {"task.data_path=" + dir.file(""), std::string("task.level=") + level,
           "db=" + dir.file("lm.db"), "checkpoint_dir=" + dir.file("ckpt")});
      RunOutcome outcome = execute_run(config);
      INFO(outcome.error);
      REQUIRE(outcome.status == RunStatus::Done);
      const std::string metric = std::string(level) == "char" ? "bpc" : "ppl";
      std::map<std::string, double> summaries(outcome.summaries.begin(), outcome.summaries.end());
      for (const char* split : {"val", "test", "test:aaa:0.025", "test:char:0.1"}) {
        INFO(split);
        REQUIRE(summaries.count(std::string(split) + "/" + metric) == 1);
        CHECK(std::isfinite(summaries[std::string(split) + "/" + metric]));
      }
      // Byte level starts near log2(256) = 8 bits, word level at the vocabulary size; a
      // repeated sentence is learnt quickly, and corruption makes it harder to predict.
      if (metric == "bpc") {
        CHECK(summaries["test/bpc"] < 5.0);
      } else {
        CHECK(summaries["test/ppl"] < 10.0);
      }
      CHECK(summaries["test:aaa:0.025/loss"] > summaries["test/loss"]);
      // The routing probe: the next token is each position's label; NMI and cosine in range.
      for (const char* layer : {"l0", "l1"}) {
        const std::string nmi = fmt::format("probe/moe/{}/spec_nmi", layer);
        REQUIRE(summaries.count(nmi) == 1);
        CHECK(summaries[nmi] >= 0.0);
        CHECK(summaries[nmi] <= 1.0);
        CHECK(std::abs(summaries[fmt::format("probe/moe/{}/expert_cosine", layer)]) <= 1.0);
      }
    }
  }
}

}  // namespace moelab
