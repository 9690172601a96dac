// A run stopped at each moment that matters (kill -9 or Ctrl-C, through the MOELAB_FAILPOINT
// fault-injection points) and resumed with `moelab run --resume` leaves exactly the record of
// the uninterrupted run: every metric row once, with the same values, and the same summaries
// (timings aside); a sweep whose worker is killed during a final evaluation does the same.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <fstream>
#include <map>
#include <tuple>

#include "harness/store/store.h"
#include "test_util.h"

namespace moelab {
namespace {

// Evaluations at non-logging steps (3, 9), checkpoints after them, dropout and router noise
// (so a resumed run must redraw exactly), routing traces at steps 0, 3, 6, 9 and 12, and a
// final evaluation of 17 splits (val, test and the 15 FMNIST-C corruptions).
const char* kRun = R"(name: resumable
seed: 5
task: {name: image, train_limit: 256, val_size: 100, corruptions: fmnist_c, corruption_examples: 40}
model: {dim: 16, depth: 2, heads: 2, dropout: 0.1, moe: {experts: 4, expert_hidden: 16}}
router: {name: noisy_topk, k: 2}
train: {steps: 12, batch_size: 16, log_every: 4, eval_every: 3, checkpoint_every: 3, trace_every: 3, warmup_steps: 2}
eval: {max_examples: 100}
)";

bool is_timing(const std::string& name) { return is_timing_metric(name); }

// Runs the binary with `args` in `dir` (stderr to dir/log), with `failpoint` as
// MOELAB_FAILPOINT when set; returns the raw wait status.
int run_moelab(const testing::TempDir& dir, const std::vector<std::string>& args,
               const std::string& failpoint = "", const std::string& once = "") {
  const pid_t child = fork();
  if (child == 0) {
    const int log = ::open(dir.file("log").c_str(), O_CREAT | O_APPEND | O_WRONLY, 0644);
    dup2(log, STDERR_FILENO);
    dup2(log, STDOUT_FILENO);
    if (!failpoint.empty()) setenv("MOELAB_FAILPOINT", failpoint.c_str(), 1);
    if (!once.empty()) setenv("MOELAB_FAILPOINT_ONCE", once.c_str(), 1);
    if (chdir(dir.file("").c_str()) != 0) _exit(127);
    std::vector<const char*> argv = {MOELAB_BINARY};
    for (const auto& arg : args) argv.push_back(arg.c_str());
    argv.push_back(nullptr);
    execv(MOELAB_BINARY, const_cast<char* const*>(argv.data()));
    _exit(127);
  }
  int status = 0;
  waitpid(child, &status, 0);
  return status;
}

std::string log_of(const testing::TempDir& dir) { return testing::read_text(dir.file("log")); }

// What a database holds of its runs: (run, step, split, name) -> values (a list, so that a
// duplicated row shows), the summaries without timings, and the runs' statuses.
struct Record {
  std::map<std::tuple<int64_t, int64_t, std::string, std::string>, std::vector<double>> metrics;
  std::map<std::pair<int64_t, std::string>, double> summaries;
  std::map<int64_t, std::string> status;
};

Record read_record(const std::string& db) {
  Store store(db);
  Record record;
  for (const auto& row : store.query("SELECT run_id, step, split, name, value FROM metrics ORDER BY rowid").rows) {
    if (is_timing(row[3].text)) continue;
    record.metrics[{row[0].integer, row[1].integer, row[2].text, row[3].text}].push_back(row[4].number());
  }
  for (const auto& row : store.query("SELECT run_id, name, value FROM summaries").rows) {
    if (is_timing(row[1].text)) continue;
    record.summaries[{row[0].integer, row[1].text}] = row[2].number();
  }
  for (const auto& row : store.query("SELECT id, status FROM runs").rows) record.status[row[0].integer] = row[1].text;
  return record;
}

// Reports each difference (a missing, extra, duplicated or changed row) and returns their count.
size_t differences(const Record& expected, const Record& actual) {
  size_t count = 0;
  for (const auto& [key, values] : expected.metrics) {
    const auto found = actual.metrics.find(key);
    const auto& [run, step, split, name] = key;
    if (found == actual.metrics.end() || found->second != values) {
      UNSCOPED_INFO("metric " << split << "/" << name << " at step " << step << ": expected "
                              << values.size() << " row(s) " << values.front() << ", got "
                              << (found == actual.metrics.end() ? 0 : found->second.size()));
      ++count;
    }
  }
  for (const auto& [key, values] : actual.metrics) {
    if (expected.metrics.count(key) == 0) {
      UNSCOPED_INFO("extra metric " << std::get<2>(key) << "/" << std::get<3>(key) << " at step "
                                    << std::get<1>(key));
      ++count;
    }
  }
  for (const auto& [key, value] : expected.summaries) {
    const auto found = actual.summaries.find(key);
    if (found == actual.summaries.end() || found->second != value) {
      UNSCOPED_INFO("summary " << key.second << ": expected " << value << ", got "
                               << (found == actual.summaries.end() ? std::string("none")
                                                                    : std::to_string(found->second)));
      ++count;
    }
  }
  if (actual.summaries.size() != expected.summaries.size()) {
    UNSCOPED_INFO("summaries: " << actual.summaries.size() << " instead of " << expected.summaries.size());
    ++count;
  }
  if (actual.status != expected.status) {
    UNSCOPED_INFO("run statuses differ");
    ++count;
  }
  return count;
}

// The routing-trace files under dir/ckpt: name -> bytes.
std::map<std::string, std::string> trace_files(const testing::TempDir& dir) {
  std::map<std::string, std::string> files;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir.file("ckpt"))) {
    if (entry.is_regular_file() && entry.path().extension() != ".pt") {
      files[entry.path().filename().string()] = testing::read_text(entry.path().string());
    }
  }
  return files;
}

// The config in `dir` with its database and checkpoints there.
std::string write_config(const testing::TempDir& dir) {
  std::ofstream(dir.file("run.yaml")) << kRun << "db: " << dir.file("r.db") << "\n"
                                      << "checkpoint_dir: " << dir.file("ckpt") << "\n";
  return dir.file("run.yaml");
}

// A sweep of the config over two routers, in `dir`.
std::string write_sweep(const testing::TempDir& dir) {
  write_config(dir);
  std::ofstream(dir.file("sweep.yaml")) << "extends: run.yaml\nname: resumable\n"
                                        << "grid:\n  router.name: [noisy_topk, topk]\n";
  return dir.file("sweep.yaml");
}

bool exited_with(int status, int code) { return WIFEXITED(status) && WEXITSTATUS(status) == code; }

const testing::TempDir& uninterrupted_dir() {
  static const testing::TempDir dir;
  return dir;
}

const Record& uninterrupted() {
  static const Record record = [] {
    const testing::TempDir& dir = uninterrupted_dir();
    const int status = run_moelab(dir, {"run", write_config(dir)});
    INFO(log_of(dir));
    REQUIRE(exited_with(status, 0));
    return read_record(dir.file("r.db"));
  }();
  return record;
}

}  // namespace

TEST_CASE("a run stopped at any moment and resumed leaves the uninterrupted run's record",
          "[checkpoint][resume]") {
  struct Moment {
    const char* failpoint;
    const char* what;
    bool interrupt;  // Ctrl-C (exit 1, 'interrupted') rather than kill -9
  };
  const Moment moment = GENERATE(
      Moment{"after_final_checkpoint", "killed after the last step's checkpoint", false},
      Moment{"final_split@3", "killed during the final evaluation", false},
      Moment{"final_split:interrupt@3", "Ctrl-C during the final evaluation", true},
      Moment{"after_checkpoint@3", "killed right after a non-logging evaluation step", false},
      Moment{"after_evaluation:interrupt@3", "Ctrl-C right after a non-logging evaluation", true},
      Moment{"recording_end", "killed while the run's end is written", false});
  INFO(moment.what << " (MOELAB_FAILPOINT=" << moment.failpoint << ")");
  const Record& expected = uninterrupted();
  REQUIRE(expected.status.size() == 1);
  REQUIRE(expected.metrics.count({1, 9, "val", "accuracy"}) == 1);  // an evaluation at step 9
  REQUIRE(expected.metrics.count({1, 12, "fmnist_c:fog", "accuracy"}) == 1);
  REQUIRE(expected.summaries.count({1, "train/moe/load_cv"}) == 1);

  testing::TempDir dir;
  const std::string config = write_config(dir);
  const int stopped = run_moelab(dir, {"run", config}, moment.failpoint);
  INFO(log_of(dir));
  if (moment.interrupt) {
    REQUIRE(exited_with(stopped, 1));
    CHECK(read_record(dir.file("r.db")).status.at(1) == "interrupted");
  } else {
    REQUIRE((WIFSIGNALED(stopped) && WTERMSIG(stopped) == SIGKILL));
    CHECK(read_record(dir.file("r.db")).status.at(1) == "running");
  }
  const int resumed = run_moelab(dir, {"run", config, "--resume"});
  REQUIRE(exited_with(resumed, 0));
  CHECK(differences(expected, read_record(dir.file("r.db"))) == 0);
  const auto traces = trace_files(dir);
  CHECK(traces.size() == 1 + 5 * 2 * 2);  // labels; 5 traced steps x 2 layers x experts, gates
  CHECK(traces == trace_files(uninterrupted_dir()));  // no temporary left behind either
  for (const auto& entry : std::filesystem::directory_iterator(dir.file("ckpt"))) {
    CHECK((entry.path().extension() == ".pt" || entry.path().extension() == ".trace"));
  }
}

TEST_CASE("a sweep whose worker is killed during a final evaluation ends with the uninterrupted "
          "sweep's record", "[sweep][resume][.slow]") {
  testing::TempDir straight, killed;
  REQUIRE(exited_with(run_moelab(straight, {"sweep", write_sweep(straight), "--workers", "1"}), 0));
  // The first worker dies at the third split of run 1's final evaluation; the supervisor
  // starts another, which resumes run 1 from its final checkpoint.
  const int status = run_moelab(killed, {"sweep", write_sweep(killed), "--workers", "1"},
                                "final_split@3", killed.file("fired"));
  INFO(log_of(killed));
  REQUIRE(exited_with(status, 0));
  REQUIRE(std::filesystem::exists(killed.file("fired")));
  const Record expected = read_record(straight.file("r.db"));
  REQUIRE(expected.status.size() == 2);
  CHECK(differences(expected, read_record(killed.file("r.db"))) == 0);
}

}  // namespace moelab
