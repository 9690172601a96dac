// A full disk, for real: a size-limited tmpfs mounted in a private mount namespace
// (`unshare -rm`, no privileges needed where user namespaces are enabled) under the checkpoint
// folder or the results database. The run must end failed (or, when not even that can be
// written, stay 'running' and say so), name the path, leave no temporary file and a database
// that passes SQLite's integrity check, and exit 1; freeing space and resuming finishes it.
#include <sys/wait.h>

#include <fstream>

#include "harness/store/store.h"
#include "test_util.h"

namespace moelab {
namespace {

const char* kRun = R"(name: full-disk
seed: 2
task: {name: image, train_limit: 256, val_size: 100}
model: {dim: 16, depth: 2, heads: 2, moe: {experts: 4, expert_hidden: 16}}
router: {name: topk, k: 2}
train: {steps: 200, batch_size: 8, log_every: 1, checkpoint_every: 50, warmup_steps: 2}
eval: {max_examples: 50}
)";

using testing::read_text;

// Runs `mounts` then `script` (sh) in `dir`, in a private mount namespace; false (with a
// warning) where this machine cannot make one or `mounts` fails.
bool in_mount_namespace(const testing::TempDir& dir, const std::string& mounts,
                        const std::string& script) {
  std::ofstream(dir.file("script.sh")) << "set -u\ncd '" << dir.file("") << "'\n"
                                       << "{ " << mounts << "; } || exit 99\n"
                                       << script;
  const int status = std::system(("unshare -rm sh " + dir.file("script.sh") + " > " +
                                  dir.file("script.log") + " 2>&1").c_str());
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == 99 || code == 127 || code == 1) {
    WARN("no private mount namespace here (unshare -rm, mount): test skipped\n"
         << read_text(dir.file("script.log")));
    return false;
  }
  REQUIRE(code == 0);
  return true;
}

// `script` with a tmpfs of `size` mounted at dir/full.
bool with_small_filesystem(const testing::TempDir& dir, const std::string& size,
                           const std::string& script) {
  std::filesystem::create_directories(dir.file("full"));
  return in_mount_namespace(dir, "mount -t tmpfs -o size=" + size + " tmpfs full", script);
}

std::string moelab() { return MOELAB_BINARY; }

// A run's metric rows, distinct rows and last step.
const char* kRowsSql =
    "'SELECT COUNT(*) AS n, COUNT(DISTINCT step || split || name) AS keys, MAX(step) AS last "
    "FROM metrics'";

}  // namespace

TEST_CASE("a full disk under the checkpoint folder fails the run naming the file, leaving no "
          "temporary", "[checkpoint][fault]") {
  testing::TempDir dir;
  std::ofstream(dir.file("run.yaml")) << kRun;
  const std::string run = moelab() + " run run.yaml db=r.db checkpoint_dir=full/ckpt";
  if (!with_small_filesystem(dir, "32k",
                             run + " > run.out 2>&1; echo $? > run.rc\n"
                             "ls -A full/ckpt > left.txt\n")) {
    return;
  }
  const std::string output = read_text(dir.file("run.out"));
  INFO(output);
  CHECK(read_text(dir.file("run.rc")) == "1\n");
  CHECK(read_text(dir.file("left.txt")).empty());  // neither the .pt nor its .tmp
  CHECK_THAT(output, Catch::Contains("full/ckpt/") && Catch::Contains(".pt' cannot be written") &&
                         Catch::Contains("No space left on device"));
  std::ofstream(dir.file("q.sh")) << "cd '" << dir.file("") << "'\n"
                                  << moelab() << " query r.db 'PRAGMA integrity_check' --csv\n"
                                  << moelab() << " query r.db 'SELECT status FROM runs' --csv\n";
  const std::string query = dir.file("q.out");
  REQUIRE(std::system(("sh " + dir.file("q.sh") + " > " + query + " 2>&1").c_str()) == 0);
  CHECK(read_text(query) == "integrity_check\nok\nstatus\nfailed\n");
}

TEST_CASE("a full disk under the results database ends the run consistently; with space again, "
          "--resume completes its record", "[store][fault]") {
  testing::TempDir dir;
  std::ofstream(dir.file("run.yaml")) << kRun;
  const std::string run = moelab() + " run run.yaml train.checkpoint_every=5 checkpoint_dir=ckpt";
  const std::string query = moelab() + " query full/r.db --csv ";
  // Rows of one step at a time, so the disk fills during training, after a checkpoint.
  if (!with_small_filesystem(dir, "512k",
                             run + " db=full/r.db > run.out 2>&1; echo $? > run.rc\n" +
                             query + "'PRAGMA integrity_check' > check.csv\n" +
                             query + "'SELECT status, error FROM runs' > runs.csv\n"
                             "mount -o remount,size=16m full\n" +
                             run + " db=full/r.db --resume > resume.out 2>&1; echo $? > resume.rc\n" +
                             query + "'SELECT status FROM runs' > resumed.csv\n" +
                             query + kRowsSql + " > resumed_rows.csv\n" +
                             run + " db=straight.db checkpoint_dir=straight > /dev/null 2>&1\n" +
                             moelab() + " query straight.db --csv " + kRowsSql + " > rows.csv\n")) {
    return;
  }
  const std::string output = read_text(dir.file("run.out"));
  INFO(output << read_text(dir.file("resume.out")));
  CHECK(read_text(dir.file("run.rc")) == "1\n");
  CHECK_THAT(output, Catch::Contains("results database 'full/r.db'") &&
                         Catch::Contains("database or disk is full"));
  CHECK(read_text(dir.file("check.csv")) == "integrity_check\nok\n");
  // Failed with the reason, or, when not even that could be written, running and said so.
  const std::string runs = read_text(dir.file("runs.csv"));
  if (runs.rfind("status,error\nrunning", 0) == 0) {
    CHECK_THAT(output, Catch::Contains("run 1 stays 'running'"));
  } else {
    CHECK_THAT(runs, Catch::StartsWith("status,error\nfailed,") &&
                         Catch::Contains("results database 'full/r.db'"));
  }
  CHECK(read_text(dir.file("resume.rc")) == "0\n");
  CHECK(read_text(dir.file("resumed.csv")) == "status\ndone\n");
  // Every row once, as many as the uninterrupted run's, up to its last step.
  CHECK(read_text(dir.file("resumed_rows.csv")) == read_text(dir.file("rows.csv")));
  CHECK_THAT(read_text(dir.file("rows.csv")), Catch::Contains(",200\n"));
}

TEST_CASE("a results database on a read-only mount can be queried and reported",
          "[store][fault]") {
  testing::TempDir dir;
  std::filesystem::create_directories(dir.file("ro"));
  {
    Store store(dir.file("ro/r.db"));  // WAL mode, as every moelab database
    RunRecord record;
    record.config_hash = "h";
    record.task = "image";
    record.router = "topk";
    store.finish_run(store.create_run(record), RunStatus::Done, {{"test/accuracy", 0.75}});
  }
  std::filesystem::remove(dir.file("ro/r.db-wal"));
  std::filesystem::remove(dir.file("ro/r.db-shm"));
  const std::string db = " ro/r.db ";
  if (!in_mount_namespace(dir, "mount --bind ro ro && mount -o remount,bind,ro ro",
                          moelab() + " query" + db + "--csv 'SELECT router FROM runs' > query.csv 2>&1; "
                          "echo $? >> query.csv\n" +
                          moelab() + " report" + db + "--format csv > report.csv 2>&1; "
                          "echo $? >> report.csv\n" +
                          moelab() + " query" + db + "--write 'DELETE FROM runs' > write.txt 2>&1; "
                          "echo $? >> write.txt\n")) {
    return;
  }
  CHECK(read_text(dir.file("query.csv")) == "router\ntopk\n0\n");
  const std::string report = read_text(dir.file("report.csv"));
  CHECK_THAT(report, Catch::Contains("0.75") && Catch::EndsWith("\n0\n"));
  // Writing is refused by the mount, with the database named (and nothing changed).
  CHECK_THAT(read_text(dir.file("write.txt")), Catch::Contains("ro/r.db") && !Catch::EndsWith("\n0\n"));
  CHECK(Store(dir.file("ro/r.db"), Store::Access::ReadOnly).query("SELECT COUNT(*) FROM runs")
            .rows.at(0).at(0).integer == 1);
}

}  // namespace moelab
