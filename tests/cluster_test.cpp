// Sweeps beyond one process tree: on a real one-node Slurm cluster and a real PostgreSQL server
// (both started by harness/scripts/test_servers.sh; test.sh and .ci/run start them). A whole
// sweep through a 2-task job array, a task killed mid-run, the time-limit warning, cancel,
// resubmission, 4 local workers on PostgreSQL, and the launcher's errors.
#include <fmt/format.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "harness/store/store.h"
#include "harness/sweep/slurm.h"
#include "test_databases.h"
#include "test_util.h"

namespace moelab {
namespace {

std::string slurm_skip_reason() {
  return testing::test_server_skip_reason("MOELAB_TEST_SLURM", "MOELAB_TEST_SLURM_SKIP");
}

// A sweep of tiny image runs in its own folder (the submitting directory: results/slurm/ is
// written there), on the test PostgreSQL server when there is one, else on an SQLite file.
class ClusterSweep {
 public:
  explicit ClusterSweep(const std::string& engine) : databases_(engine) {}

  bool available() const { return databases_.available(); }

  // `routers` x `seeds` runs of `steps` steps, checkpointing every `checkpoint_every`.
  void write(const std::string& name, int steps, int checkpoint_every, const std::string& routers,
             int seeds) {
    name_ = name;
    db_ = databases_.create(name);
    std::filesystem::copy_file(std::string(MOELAB_SOURCE_DIR) + "/experiments/quickstart.yaml",
                               databases_.file("quickstart.yaml"),
                               std::filesystem::copy_options::overwrite_existing);
    std::ofstream(file()) << fmt::format(R"(name: {}
extends: quickstart.yaml
base:
  task: {{train_limit: 256, val_size: 100}}
  model: {{dim: 16, depth: 2, heads: 2, moe: {{experts: 4, expert_hidden: 16}}}}
  train: {{steps: {}, batch_size: 16, log_every: 10, eval_every: 0, warmup_steps: 1, checkpoint_every: {}}}
  eval: {{max_examples: 100}}
  db: {}
  checkpoint_dir: {}
grid:
  router.name: [{}]
seeds: {}
)",
                                         name, steps, checkpoint_every, db_,
                                         databases_.file("checkpoints"), routers, seeds);
  }

  std::string file() const { return databases_.file("sweep.yaml"); }
  const std::string& db() const { return db_; }
  std::string slurm_folder() const { return databases_.file("results/slurm/" + name_); }

  // `moelab ARGS` run in the sweep's folder.
  testing::Command moelab(const std::string& args) const {
    return testing::run_shell(fmt::format("cd {} && {} {}", databases_.folder().path(), MOELAB_BINARY, args));
  }

  QueueCounts counts() const {
    Store store(db_, Store::Access::ReadOnly);
    return sweep_counts(store, name_);
  }
  int64_t count(const std::string& sql) const {
    Store store(db_, Store::Access::ReadOnly);
    return store.query(sql).rows.at(0).at(0).integer;
  }
  std::string job() const {
    Store store(db_, Store::Access::ReadOnly);
    const auto launches = store.launches(name_);
    return launches.empty() ? "" : launches.back().job_id;
  }
  // Every task log of the sweep's jobs, concatenated.
  std::string task_logs() const {
    std::string text;
    for (const auto& entry : std::filesystem::directory_iterator(slurm_folder())) {
      if (entry.path().extension() == ".out") text += testing::read_text(entry.path().string());
    }
    return text;
  }

 private:
  testing::TestDatabases databases_;
  std::string name_, db_;
};

// How many steps of a ClusterSweep run take at least `seconds` here: a local 2000-step run, timed
// with its start-up, so the rate is underestimated and the run lasts longer, not shorter.
int steps_lasting(ClusterSweep& sweep, double seconds) {
  constexpr int kCalibrationSteps = 2000;
  sweep.write("calibration", kCalibrationSteps, kCalibrationSteps, "topk", 1);
  const auto start = std::chrono::steady_clock::now();
  const auto calibration = sweep.moelab("sweep " + sweep.file());
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  INFO(calibration.output);
  REQUIRE(calibration.exit_code == 0);
  return std::max(6000, static_cast<int>(seconds * kCalibrationSteps / elapsed) / 50 * 50);
}

std::string cluster_engine() { return testing::postgres_skip_reason().empty() ? "postgres" : "sqlite"; }

// Polls `condition` every 200 ms for up to `seconds`; its last value.
template <class Condition>
bool wait_until(Condition condition, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return true;
}

// Both runs of a 2-run sweep running, one of them past its first checkpoint (step 50).
bool both_running_past_a_checkpoint(const ClusterSweep& sweep) {
  return sweep.counts().running == 2 &&
         sweep.count("SELECT COUNT(*) FROM metrics WHERE split = 'train' AND name = 'loss' AND step >= 60") > 0;
}

// No (run, step) of the training loss logged twice: a resumed run rewrote only its own tail.
int64_t duplicated_loss_rows(const ClusterSweep& sweep) {
  return sweep.count("SELECT COUNT(*) FROM (SELECT run_id, step FROM metrics WHERE split = 'train' AND "
                     "name = 'loss' GROUP BY run_id, step HAVING COUNT(*) > 1) twice");
}

#define MOELAB_REQUIRE_SLURM()                      \
  if (const std::string reason = slurm_skip_reason(); !reason.empty()) { \
    WARN("skipped: " << reason);                    \
    return;                                         \
  }

}  // namespace

TEST_CASE("a 6-run sweep through a 2-task Slurm array: every run done once, resubmitted, nothing "
          "duplicated",
          "[slurm][.slow]") {
  MOELAB_REQUIRE_SLURM();
  ClusterSweep sweep(cluster_engine());
  if (!sweep.available()) return;
  sweep.write("array6", 20, 10, "topk, ssr, loss_free", 2);
  const auto submitted = sweep.moelab("sweep " + sweep.file() + " --launcher slurm --array-tasks 2");
  INFO(submitted.output);
  REQUIRE(submitted.exit_code == 0);
  CHECK_THAT(submitted.output, Catch::Matchers::Contains("6 run(s) to do, submitted as Slurm job"));
  const std::string job = sweep.job();
  REQUIRE(!job.empty());
  bool script_found = false;
  for (const auto& entry : std::filesystem::directory_iterator(sweep.slurm_folder())) {
    if (entry.path().extension() != ".sbatch") continue;
    const std::string script = testing::read_text(entry.path().string());
    CHECK_THAT(script, Catch::Matchers::Contains("#SBATCH --array=1-2\n") &&
                           Catch::Matchers::Contains("#SBATCH --signal=B:USR1@120") &&
                           Catch::Matchers::Contains("sweep-worker --db '" + sweep.db() + "'"));
    script_found = true;
  }
  CHECK(script_found);
  REQUIRE(wait_until([&] { return sweep.counts().done == 6; }, 180));
  CHECK(sweep.count("SELECT COUNT(*) FROM runs") == 6);
  CHECK(sweep.count("SELECT COUNT(DISTINCT config_hash) FROM runs") == 6);
  CHECK(sweep.count("SELECT COUNT(DISTINCT run_id) FROM summaries") == 6);
  CHECK(duplicated_loss_rows(sweep) == 0);
  const std::string logs = sweep.task_logs();
  CHECK_THAT(logs, Catch::Matchers::Contains("done"));

  const auto status = sweep.moelab("sweep status " + sweep.file());
  CHECK(status.exit_code == 0);
  CHECK_THAT(status.output, Catch::Matchers::Contains("6 done | 0 running | 0 pending") &&
                                Catch::Matchers::Contains("Slurm job " + job));

  const auto again = sweep.moelab("sweep " + sweep.file() + " --launcher slurm --array-tasks 2");
  CHECK(again.exit_code == 0);
  CHECK_THAT(again.output, Catch::Matchers::Contains("nothing to do"));
  CHECK(sweep.count("SELECT COUNT(*) FROM runs") == 6);
  CHECK(sweep.count("SELECT COUNT(*) FROM launches") == 1);
}

TEST_CASE("an array task killed mid-run: another task resumes its run from the checkpoint",
          "[slurm][.slow]") {
  MOELAB_REQUIRE_SLURM();
  ClusterSweep sweep(cluster_engine());
  if (!sweep.available()) return;
  sweep.write("killed", 1200, 50, "topk, loss_free", 1);
  REQUIRE(sweep.moelab("sweep " + sweep.file() + " --launcher slurm").exit_code == 0);
  REQUIRE(wait_until([&] { return both_running_past_a_checkpoint(sweep); }, 120));
  // The worker of the run that is further along dies as if its node failed.
  Store store(sweep.db(), Store::Access::ReadOnly);
  // (COALESCE: PostgreSQL sorts a run without metrics, NULL, first in descending order.)
  const auto victim = store.query("SELECT r.id, r.worker FROM runs r WHERE r.status = 'running' ORDER BY "
                                  "COALESCE((SELECT MAX(step) FROM metrics m WHERE m.run_id = r.id), -1) "
                                  "DESC LIMIT 1");
  REQUIRE(victim.rows.size() == 1);
  const int64_t run = victim.rows[0][0].integer;
  const std::string worker = victim.rows[0][1].text;
  const pid_t pid = static_cast<pid_t>(std::stol(worker.substr(worker.find(':') + 1)));
  REQUIRE(kill(pid, SIGKILL) == 0);
  REQUIRE(wait_until([&] { return sweep.counts().done == 2; }, 240));
  const std::string logs = sweep.task_logs();
  INFO(logs);
  CHECK_THAT(logs, Catch::Matchers::Contains(fmt::format("run {} [killed] resuming at step", run)));
  CHECK(duplicated_loss_rows(sweep) == 0);
  CHECK(sweep.count(fmt::format("SELECT MAX(step) FROM metrics WHERE run_id = {} AND split = 'train'", run)) == 1200);
}

TEST_CASE("the time-limit warning: the worker checkpoints, its run goes back to the queue, the task "
          "is requeued",
          "[slurm][.slow]") {
  MOELAB_REQUIRE_SLURM();
  ClusterSweep sweep(cluster_engine());
  if (!sweep.available()) return;
  sweep.write("warned", 1200, 50, "topk, loss_free", 1);
  REQUIRE(sweep.moelab("sweep " + sweep.file() + " --launcher slurm").exit_code == 0);
  REQUIRE(wait_until([&] { return both_running_past_a_checkpoint(sweep); }, 120));
  // What Slurm sends signal_seconds before the time limit (--signal=B:USR1@...), sent now.
  const auto warned = testing::run_shell("scancel --signal=USR1 --batch " + sweep.job() + "_1");
  REQUIRE(warned.exit_code == 0);
  REQUIRE(wait_until([&] { return sweep.counts().done == 2; }, 240));
  const std::string logs = sweep.task_logs();
  INFO(logs);
  CHECK_THAT(logs, Catch::Matchers::Contains("interrupted after step") &&
                       Catch::Matchers::Contains("is back in the queue") &&
                       Catch::Matchers::Contains("requeueing task " + sweep.job() + "_1") &&
                       Catch::Matchers::Contains("resuming at step"));
  CHECK(duplicated_loss_rows(sweep) == 0);
}

TEST_CASE("a real time limit: Slurm's warning before it checkpoints the run, the task is requeued "
          "and resumes it",
          "[slurm][.slow]") {
  MOELAB_REQUIRE_SLURM();
  ClusterSweep sweep(cluster_engine());
  if (!sweep.available()) return;
  // One run longer than a 1-minute limit on this machine, whatever its speed; the warning 50 s
  // before the limit (Slurm sends it up to a minute early: here within the first 10-40 s).
  const int steps = steps_lasting(sweep, 100);
  INFO("steps: " << steps);
  sweep.write("limited", steps, 50, "topk", 1);
  const auto submitted = sweep.moelab("sweep " + sweep.file() + " --launcher slurm --time 1 --signal-seconds 50");
  INFO(submitted.output);
  REQUIRE(submitted.exit_code == 0);
  REQUIRE(wait_until([&] { return sweep.counts().done == 1; }, 400));
  const std::string logs = sweep.task_logs();
  INFO(logs);
  CHECK_THAT(logs, Catch::Matchers::Contains("requeueing task " + sweep.job() + "_1") &&
                       Catch::Matchers::Contains("resuming at step"));
  CHECK(duplicated_loss_rows(sweep) == 0);
  CHECK(sweep.count("SELECT MAX(step) FROM metrics WHERE split = 'train'") == steps);
}

TEST_CASE("sweep cancel: the jobs end and the runs they held are pending again", "[slurm][.slow]") {
  MOELAB_REQUIRE_SLURM();
  ClusterSweep sweep(cluster_engine());
  if (!sweep.available()) return;
  sweep.write("cancelled", 20000, 50, "topk, loss_free", 1);
  REQUIRE(sweep.moelab("sweep " + sweep.file() + " --launcher slurm").exit_code == 0);
  REQUIRE(wait_until([&] { return both_running_past_a_checkpoint(sweep); }, 120));
  const auto cancelled = sweep.moelab("sweep cancel " + sweep.file());
  INFO(cancelled.output);
  CHECK(cancelled.exit_code == 0);
  CHECK_THAT(cancelled.output, Catch::Matchers::Contains("cancelled Slurm job(s) " + sweep.job()));
  const QueueCounts after = sweep.counts();
  CHECK(after.running == 0);
  CHECK(after.pending == 2);
  const auto active = testing::run_shell("squeue --noheader --jobs=" + sweep.job() + " --format=%i");
  CHECK(active.output.find(sweep.job()) == std::string::npos);
}

TEST_CASE("Slurm launcher errors: unknown partition (Slurm's message), nothing queued", "[slurm][.slow]") {
  MOELAB_REQUIRE_SLURM();
  ClusterSweep sweep("sqlite");
  sweep.write("refused", 20, 10, "topk", 1);
  const auto refused = sweep.moelab("sweep " + sweep.file() + " --launcher slurm --partition nosuchpartition");
  CHECK(refused.exit_code == 2);
  CHECK_THAT(refused.output, Catch::Matchers::Contains("Slurm refused") &&
                                 Catch::Matchers::Contains("nosuchpartition"));
  CHECK(sweep.count("SELECT COUNT(*) FROM runs") == 0);  // nothing enqueued
  CHECK(std::filesystem::is_empty(sweep.slurm_folder()));  // no batch script left behind
}

TEST_CASE("Slurm launcher errors without Slurm: sbatch missing, a launcher key typo, SQLite on a "
          "network filesystem",
          "[slurm]") {
  ClusterSweep sweep("sqlite");
  sweep.write("offline", 20, 10, "topk", 1);
  // Run with a PATH that holds no sbatch.
  const auto no_sbatch = testing::run_shell(fmt::format("cd {} && PATH=/nonexistent {} sweep {} --launcher slurm",
                                                        std::filesystem::path(sweep.file()).parent_path().string(),
                                                        MOELAB_BINARY, sweep.file()));
  CHECK(no_sbatch.exit_code == 2);
  CHECK_THAT(no_sbatch.output, Catch::Matchers::Contains("sbatch is not on PATH"));
  CHECK_FALSE(std::filesystem::exists(sweep.db()));
  std::ofstream(sweep.file(), std::ios::app) << "launcher:\n  name: slurm\n  partiton: gpu\n";
  const auto typo = sweep.moelab("sweep plan " + sweep.file());
  CHECK(typo.exit_code == 2);
  CHECK_THAT(typo.output, Catch::Matchers::Contains("sweep.yaml:15:3") &&
                              Catch::Matchers::Contains("did you mean 'partition'"));
  CHECK(network_filesystem_kind(0x6969) == "nfs");
  CHECK(network_filesystem_kind(0x0BD00BD0) == "lustre");
  CHECK(network_filesystem_kind(0x47504653) == "gpfs");
  CHECK(network_filesystem_kind(0xEF53) == "");  // ext4
  CHECK(network_filesystem_of(sweep.file()) == "");
}

TEST_CASE("50 tiny runs, 4 local workers on PostgreSQL: each run exactly once", "[postgres][.slow]") {
  ClusterSweep sweep("postgres");
  if (!sweep.available()) return;
  sweep.write("pg50", 2, 0, "topk", 50);
  const auto ran = sweep.moelab("sweep " + sweep.file() + " --workers 4");
  INFO(ran.output);
  CHECK(ran.exit_code == 0);
  CHECK(sweep.counts().done == 50);
  CHECK(sweep.count("SELECT COUNT(*) FROM runs") == 50);
  CHECK(sweep.count("SELECT COUNT(DISTINCT worker) FROM runs") <= 4);
  CHECK(duplicated_loss_rows(sweep) == 0);
  CHECK(sweep.count("SELECT COUNT(*) FROM summaries WHERE name = 'test/accuracy'") == 50);
  // The reading commands on the server's database, as on a file.
  const auto report = sweep.moelab("report " + sweep.db() + " --sweep pg50 --group-by router.name");
  CHECK(report.exit_code == 0);
  CHECK_THAT(report.output, Catch::Matchers::Contains("topk") && Catch::Matchers::Contains("50"));
  for (const char* preset : {"leaderboard", "progress", "failures"}) {
    const auto listed = sweep.moelab(std::string("query ") + sweep.db() + " --preset " + preset);
    INFO(preset << ": " << listed.output);
    CHECK(listed.exit_code == 0);
  }
  const auto plotted = sweep.moelab("plot " + sweep.db() + " --sweep pg50 --kind curves --metric train/loss -o plots");
  INFO(plotted.output);
  CHECK(plotted.exit_code == 0);
}

}  // namespace moelab
