// Everything a user can get wrong, fed in on purpose. In-process: thousands of mutated run
// configs and sweep files (deterministic mutations of the shipped ones) must parse or throw a
// ConfigError that names the file, never another exception, and quickly. Through the binary:
// broken checkpoints, databases and command lines end with exit 1 or 2, the message naming
// the file or value, no library stack trace, no crash, no run row left 'running'.
#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <random>

#include "harness/store/store.h"
#include "harness/sweep/sweep.h"
#include "test_util.h"

namespace moelab {
namespace {


// One random edit of `text`: a character deleted, inserted or replaced (from YAML's
// punctuation, digits and letters), a line duplicated, deleted or cut short.
std::string mutate(const std::string& text, std::mt19937_64& rng) {
  static const std::string kChars = "{}[]:,'\"#-&*!|>%@` \n\t0123456789.eaz~";
  std::string out = text;
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % std::max<size_t>(n, 1)); };
  const size_t at = pick(out.size());
  switch (rng() % 6) {
    case 0: out.erase(at, 1); break;
    case 1: out.insert(at, 1, kChars[pick(kChars.size())]); break;
    case 2: out[at] = kChars[pick(kChars.size())]; break;
    case 3: {  // a line twice
      const size_t start = out.rfind('\n', at) == std::string::npos ? 0 : out.rfind('\n', at) + 1;
      const size_t end = out.find('\n', at);
      out.insert(start, out.substr(start, end == std::string::npos ? std::string::npos : end - start + 1));
      break;
    }
    case 4: {  // a line removed
      const size_t start = out.rfind('\n', at) == std::string::npos ? 0 : out.rfind('\n', at) + 1;
      const size_t end = out.find('\n', at);
      out.erase(start, end == std::string::npos ? std::string::npos : end - start + 1);
      break;
    }
    default: out.resize(at); break;  // cut short
  }
  return out;
}

struct Outcome {
  bool parsed = false;
  std::string error;  // the ConfigError's message
};

// Runs `parse` on `text`; fails the test on any exception but a ConfigError, or one that
// names no file, or a parse slower than a second.
template <class Parse>
Outcome check_mutation(const std::string& text, const std::vector<std::string>& files, Parse parse) {
  Outcome outcome;
  const auto start = std::chrono::steady_clock::now();
  try {
    parse(text);
    outcome.parsed = true;
  } catch (const ConfigError& e) {
    outcome.error = e.what();
  } catch (const std::exception& e) {
    FAIL("not a ConfigError: " << e.what() << "\ninput:\n" << text);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (seconds > 1.0) FAIL("took " << seconds << " s; input:\n" << text);
  if (!outcome.parsed) {
    const bool names_a_file = std::any_of(files.begin(), files.end(), [&](const std::string& f) {
      return outcome.error.find(f) != std::string::npos;
    });
    if (!names_a_file) FAIL("names no file: " << outcome.error << "\ninput:\n" << text);
  }
  return outcome;
}

}  // namespace

TEST_CASE("2000 mutated run configs parse or fail with a ConfigError naming the file",
          "[config][errors]") {
  const std::string original = testing::read_text(std::string(MOELAB_SOURCE_DIR) + "/experiments/quickstart.yaml");
  std::mt19937_64 rng(20261201);
  int parsed = 0, refused = 0;
  for (int i = 0; i < 2000; ++i) {
    std::string text = original;
    for (int edits = 1 + static_cast<int>(rng() % 3); edits > 0; --edits) text = mutate(text, rng);
    const Outcome outcome = check_mutation(text, {"fuzz.yaml"}, [](const std::string& yaml) {
      parse_run_config(yaml, "fuzz.yaml");
    });
    (outcome.parsed ? parsed : refused) += 1;
  }
  INFO(parsed << " parsed, " << refused << " refused");
  CHECK(refused > 500);  // the mutations do break things
  CHECK(parsed > 100);   // and comments, spacing and values leave many valid
}

TEST_CASE("1000 mutated sweep files plan or fail with a ConfigError naming a file",
          "[sweep][errors]") {
  const std::string dir = std::string(MOELAB_SOURCE_DIR) + "/experiments/sweeps";
  const std::string original = testing::read_text(dir + "/main.yaml");
  std::mt19937_64 rng(1201);
  int planned = 0, refused = 0;
  for (int i = 0; i < 1000; ++i) {
    std::string text = original;
    for (int edits = 1 + static_cast<int>(rng() % 3); edits > 0; --edits) text = mutate(text, rng);
    const Outcome outcome =
        check_mutation(text, {"fuzz_sweep.yaml", "quickstart.yaml"}, [&](const std::string& yaml) {
          expand_sweep_text(yaml, "fuzz_sweep.yaml", dir);
        });
    (outcome.parsed ? planned : refused) += 1;
  }
  INFO(planned << " planned, " << refused << " refused");
  CHECK(refused > 200);
  CHECK(planned > 50);
}

// `a0: &a0 [x, ..]`, then a1 .. a<levels> each a list of ten aliases of the level below:
// 10^levels values in a few hundred bytes.
std::string alias_bomb(int levels, const std::string& under) {
  std::string text = "anchors:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int level = 1; level <= levels; ++level) {
    text += fmt::format("  a{}: &a{} [", level, level);
    for (int i = 0; i < 10; ++i) text += fmt::format("{}*a{}", i == 0 ? "" : ", ", level - 1);
    text += "]\n";
  }
  return text + under + fmt::format("*a{}\n", levels);
}

TEST_CASE("an alias bomb is refused at load (no hang), naming the file and line",
          "[config][sweep][errors]") {
  // A run config: the bomb under a key; a sweep: the bomb in its base.
  const std::string run_error = testing::config_error(alias_bomb(9, "name: "));
  CHECK_THAT(run_error, Catch::Matchers::Contains("test.yaml:") &&
                            Catch::Matchers::Contains("more than 200000 values"));
  const std::string dir = std::string(MOELAB_SOURCE_DIR) + "/experiments/sweeps";
  try {
    expand_sweep_text(alias_bomb(9, "sweep: bomb\nbase:\n  name: ") +
                          "axes:\n  seed: [0, 1]\n",
                      "bomb.yaml", dir);
    FAIL("the sweep planned");
  } catch (const ConfigError& e) {
    CHECK_THAT(e.what(), Catch::Matchers::Contains("bomb.yaml:") &&
                             Catch::Matchers::Contains("more than 200000 values"));
  }
  // Deep nesting without aliases.
  CHECK_THAT(testing::config_error("name: " + std::string(100, '[') + std::string(100, ']') + "\n"),
             Catch::Matchers::Contains("deeper than 64 levels"));
  // Three levels (1000 values) are an ordinary list: refused for its type, not its size.
  CHECK_THAT(testing::config_error(alias_bomb(3, "name: ")),
             Catch::Matchers::Contains("name = a list: expected string"));
}

}  // namespace moelab

namespace moelab {

TEST_CASE("broken checkpoints, databases and command lines: exit 1 or 2 naming the file or "
          "value, no library trace, nothing left running", "[smoke][errors][.slow]") {
  testing::TempDir dir;
  using testing::run_moelab;
  auto check_failure = [](const testing::Command& command, int exit_code,
                          const std::vector<std::string>& parts) {
    INFO(command.output);
    CHECK(command.exit_code == exit_code);
    CHECK_THAT(command.output, !Catch::Matchers::Contains("Exception raised from") &&
                                   !Catch::Matchers::Contains("frame #") &&
                                   !Catch::Matchers::Contains("terminate called"));
    for (const auto& part : parts) CHECK_THAT(command.output, Catch::Matchers::Contains(part));
  };
  std::ofstream(dir.file("run.yaml")) << R"(task: {name: image, train_limit: 256, val_size: 100}
model: {dim: 16, depth: 2, heads: 2, moe: {experts: 4, expert_hidden: 16}}
train: {steps: 6, batch_size: 16, log_every: 2, warmup_steps: 1, checkpoint_every: 2}
eval: {max_examples: 50}
)" << "db: " << dir.file("r.db") << "\ncheckpoint_dir: " << dir.file("ckpt") << "\n";
  const std::string run = "run " + dir.file("run.yaml");

  // A checkpoint that is not one (garbage, truncated): --resume names it and changes nothing.
  REQUIRE(run_moelab(run).exit_code == 0);
  const std::string checkpoint = std::filesystem::directory_iterator(dir.file("ckpt"))->path();
  const auto size = std::filesystem::file_size(checkpoint);
  Store(dir.file("r.db")).query("UPDATE runs SET status = 'interrupted'");
  std::filesystem::resize_file(checkpoint, size / 2);
  check_failure(run_moelab(run + " --resume"), 1, {checkpoint, "cannot be read"});
  std::ofstream(checkpoint) << "not a checkpoint\n";
  check_failure(run_moelab(run + " --resume"), 1, {checkpoint, "cannot be read"});
  CHECK(Store(dir.file("r.db")).query("SELECT status FROM runs").rows.at(0).at(0).text == "interrupted");

  // Databases: of a newer moelab, a folder, not a database.
  {
    Store newer(dir.file("newer.db"));
    newer.query("PRAGMA user_version = 99");
  }
  check_failure(run_moelab(run + " db=" + dir.file("newer.db")), 2, {"newer.db", "schema version 99"});
  std::filesystem::create_directories(dir.file("folder.db"));
  check_failure(run_moelab(run + " db=" + dir.file("folder.db")), 2, {"folder.db", "unable to open"});
  std::ofstream(dir.file("text.db")) << "just text, long enough to be read as a database header\n";
  check_failure(run_moelab(run + " db=" + dir.file("text.db")), 2, {"text.db", "not a database"});
  check_failure(run_moelab("report " + dir.file("none.db")), 2, {"none.db", "does not exist"});

  // Command-line values.
  const std::string sweep = std::string(MOELAB_SOURCE_DIR) + "/experiments/sweeps/main.yaml";
  check_failure(run_moelab("sweep " + sweep + " --workers abc"), 2, {"--workers", "abc"});
  check_failure(run_moelab("sweep " + sweep + " --workers 0"), 2, {"--workers"});
  check_failure(run_moelab("sweep " + sweep + " --stale-after -5"), 2, {"--stale-after"});
  check_failure(run_moelab("sweep " + sweep + " --threads-per-worker 100000"), 2, {"--threads-per-worker"});
  check_failure(run_moelab("run"), 2, {"config is required"});
  check_failure(run_moelab("run " + dir.file("missing.yaml")), 2, {"missing.yaml"});
  check_failure(run_moelab(run + " train.steps"), 2, {"train.steps", "key=value"});
  check_failure(run_moelab(run + " train.steps=abc"), 2, {"train.steps", "abc"});
  check_failure(run_moelab("query " + dir.file("r.db") + " \"SELEC 1\""), 2, {"r.db", "syntax error"});
  CHECK(Store(dir.file("r.db")).query("SELECT COUNT(*) FROM runs WHERE status = 'running'")
            .rows.at(0).at(0).integer == 0);
}

}  // namespace moelab
