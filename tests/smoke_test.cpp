// End to end through the `moelab` binary: a few training steps on real Fashion-MNIST write a
// done run with metrics; query reads it; config errors exit 2 with the line number.
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "harness/core/blas.h"
#include "harness/core/npy.h"
#include "harness/run/runner.h"
#include "harness/store/store.h"
#include "routers/registry.h"
#include "test_util.h"

namespace moelab {
namespace {

using testing::Command;
using testing::run_moelab;

const char* kTinyRun = R"(name: smoke
seed: 1
task: {name: image, train_limit: 512, val_size: 500}
model: {dim: 16, depth: 2, heads: 2, moe: {experts: 4, expert_hidden: 16, layers: every_other}}
router: {name: topk, k: 2, aux_coef: 0.01}
train: {steps: 6, batch_size: 32, log_every: 3, warmup_steps: 2, eval_every: 3}
eval: {max_examples: 200}
)";

}  // namespace

TEST_CASE("moelab run trains, evaluates and records a done run", "[smoke]") {
  testing::TempDir dir;
  std::ofstream(dir.file("tiny.yaml")) << kTinyRun;
  const std::string db = dir.file("results.db");
  Command run = run_moelab("run " + dir.file("tiny.yaml") + " db=" + db + " checkpoint_dir=" + dir.file("ckpt"));
  INFO(run.output);
  REQUIRE(run.exit_code == 0);
  CHECK_THAT(run.output, Catch::Matchers::Contains("test/accuracy"));

  Store store(db);
  auto runs = store.query("SELECT status, task, router, seed, git_commit, torch_version, threads, "
                          "blas FROM runs");
  REQUIRE(runs.rows.size() == 1);
  CHECK(runs.rows[0][0].text == "done");
  CHECK(runs.rows[0][1].text == "image");
  CHECK(runs.rows[0][2].text == "topk");
  CHECK(runs.rows[0][3].integer == 1);
  CHECK(!runs.rows[0][4].text.empty());
  CHECK(!runs.rows[0][5].text.empty());
  CHECK(runs.rows[0][6].integer == 2);
  CHECK(runs.rows[0][7].text == blas_description());  // the child runs the tests' kernels

  auto steps = store.query(
      "SELECT step FROM metrics WHERE split='train' AND name='loss' ORDER BY step");
  REQUIRE(steps.rows.size() == 2);
  CHECK(steps.rows[0][0].integer == 3);
  CHECK(steps.rows[1][0].integer == 6);
  auto val = store.query("SELECT COUNT(*) FROM metrics WHERE split='val' AND name='accuracy'");
  CHECK(val.rows[0][0].integer == 2);  // periodic at step 3 and final
  auto loads = store.query(
      "SELECT SUM(value) FROM metrics WHERE step=6 AND name GLOB 'moe/l1/load_e[0-9]*'");
  CHECK(loads.rows[0][0].real == Approx(1.0));  // per-expert load shares of block 1
  auto summary = store.query("SELECT value FROM summaries WHERE name='test/accuracy'");
  REQUIRE(summary.rows.size() == 1);
  CHECK(summary.rows[0][0].real >= 0.0);
  CHECK(summary.rows[0][0].real <= 1.0);
  auto params = store.query("SELECT value FROM params WHERE key='router.k'");
  CHECK(params.rows[0][0].text == "2");

  Command query = run_moelab("query " + db + " \"SELECT status, router FROM runs\" --json");
  CHECK(query.exit_code == 0);
  CHECK_THAT(query.output, Catch::Matchers::Contains("\"status\": \"done\""));
}

TEST_CASE("the OpenBLAS core that suits the CPU: generic fallbacks replaced, ordinary cores kept",
          "[smoke][blas]") {
  const CpuFeatures avx512{true, true, true}, avx2{true, true, false}, old{false, false, false};
  CHECK(better_openblas_core(avx512, "Prescott") == "SkylakeX");
  CHECK(better_openblas_core(avx512, "Haswell") == "SkylakeX");
  CHECK(better_openblas_core(avx512, "SkylakeX").empty());
  CHECK(better_openblas_core(avx512, "Cooperlake").empty());
  CHECK(better_openblas_core(avx2, "Prescott") == "Haswell");
  CHECK(better_openblas_core(avx2, "Nehalem") == "Haswell");
  CHECK(better_openblas_core(avx2, "Zen").empty());
  CHECK(better_openblas_core(old, "Prescott").empty());
  CHECK(better_openblas_core(avx512, "").empty());  // not OpenBLAS: nothing to choose
}

TEST_CASE("moelab runs the BLAS kernels that suit the CPU unless the user chose a core",
          "[smoke][blas]") {
  const std::string fresh = "env -u OPENBLAS_CORETYPE -u MOELAB_BLAS_SELECTED ";
  const std::string binary = MOELAB_BINARY;
  auto version = [&](const std::string& environment) {
    const std::string command = environment + binary + " --version 2>&1";
    FILE* pipe = popen(command.c_str(), "r");
    REQUIRE(pipe != nullptr);
    std::string output;
    char buffer[512];
    while (fgets(buffer, sizeof buffer, pipe) != nullptr) output += buffer;
    REQUIRE(pclose(pipe) == 0);
    return output;
  };
  if (openblas_core().empty()) {
    CHECK_THAT(version(fresh), Catch::Matchers::Contains("BLAS: reference BLAS or other"));
    return;
  }
  // The user's choice wins, even a slow one.
  CHECK_THAT(version(fresh + "OPENBLAS_CORETYPE=Prescott "), Catch::Matchers::EndsWith("Prescott MAX_THREADS=64\n") ||
                                                           Catch::Matchers::Contains(" Prescott "));
  // Left to itself, moelab runs no core below what the CPU supports.
  const std::string chosen = version(fresh);
  INFO(chosen);
  const CpuFeatures features = cpu_features();
  if (features.avx512f) {
    CHECK_THAT(chosen, Catch::Matchers::Contains(" SkylakeX ") || Catch::Matchers::Contains(" Cooperlake ") ||
                           Catch::Matchers::Contains(" SapphireRapids "));
  } else if (features.avx2 && features.fma) {
    CHECK_THAT(chosen, !Catch::Matchers::Contains(" Prescott ") && !Catch::Matchers::Contains(" Nehalem "));
  }
}

TEST_CASE("a run with null experts trains and logs their share", "[smoke][null_experts]") {
  testing::TempDir dir;
  std::ofstream(dir.file("tiny.yaml")) << kTinyRun;
  const std::string db = dir.file("null.db");
  Command run = run_moelab("run " + dir.file("tiny.yaml") + " db=" + db + " checkpoint_dir=" +
                           dir.file("ckpt") + " model.moe.null_experts=zero:1,copy:1,constant:1");
  INFO(run.output);
  REQUIRE(run.exit_code == 0);
  Store store(db);
  auto share = store.query("SELECT value FROM metrics WHERE name = 'moe/null_frac' ORDER BY step");
  REQUIRE(!share.rows.empty());
  CHECK(share.rows.back()[0].real >= 0.0);
  CHECK(share.rows.back()[0].real <= 1.0);
  // A soft router has no assignments to give null experts: the run fails saying so.
  std::string soft_yaml = kTinyRun;
  soft_yaml.replace(soft_yaml.find("router: {name: topk, k: 2, aux_coef: 0.01}"), 42,
                    "router: {name: soft_moe}");
  std::ofstream(dir.file("soft.yaml")) << soft_yaml;
  Command soft = run_moelab("run " + dir.file("soft.yaml") + " db=" + db + " checkpoint_dir=" +
                            dir.file("ckpt") + " model.moe.null_experts=copy");
  CHECK(soft.exit_code == 1);
  CHECK_THAT(soft.output, Catch::Matchers::Contains("model.moe.null_experts"));
}

TEST_CASE("the same config and seed give identical metrics", "[smoke]") {
  testing::TempDir dir;
  std::ofstream(dir.file("tiny.yaml")) << kTinyRun;
  const std::string db = dir.file("results.db");
  REQUIRE(run_moelab("run " + dir.file("tiny.yaml") + " db=" + db + " checkpoint_dir=" + dir.file("ckpt")).exit_code == 0);
  REQUIRE(run_moelab("run " + dir.file("tiny.yaml") + " db=" + db + " checkpoint_dir=" + dir.file("ckpt")).exit_code == 0);
  Store store(db);
  auto differing = store.query(R"(
SELECT COUNT(*) FROM metrics a JOIN metrics b
  ON a.step = b.step AND a.split = b.split AND a.name = b.name AND a.run_id = 1 AND b.run_id = 2
WHERE a.value IS NOT b.value AND a.name NOT LIKE '%route_ms' AND a.name NOT LIKE '%seconds%')");
  auto compared = store.query("SELECT COUNT(*) FROM metrics WHERE run_id = 1");
  CHECK(compared.rows[0][0].integer > 20);
  CHECK(differing.rows[0][0].integer == 0);
}

TEST_CASE("config errors exit 2 with file and line, a run failing on bad data exits 1", "[smoke]") {
  testing::TempDir dir;
  std::ofstream(dir.file("typo.yaml")) << "seed: 1\ntrain:\n  stpes: 3\n";
  Command typo = run_moelab("run " + dir.file("typo.yaml"));
  CHECK(typo.exit_code == 2);
  CHECK_THAT(typo.output, Catch::Matchers::Contains("typo.yaml:3:3"));
  CHECK_THAT(typo.output, Catch::Matchers::Contains("did you mean 'steps'?"));

  Command override_error = run_moelab("run " + dir.file("typo.yaml") + " train.lr=-1");
  CHECK(override_error.exit_code == 2);

  // A data file that passes the pre-run checks but is wrong inside: the run fails (exit 1),
  // recorded with the file and the value; no LibTorch trace.
  const std::string data = dir.file("data");
  std::filesystem::create_directories(data);
  for (const char* name : {"train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                           "t10k-labels-idx1-ubyte.gz"}) {
    std::filesystem::create_symlink(testing::fashion_mnist_dir() + "/" + name, data + "/" + name);
  }
  {
    std::ofstream labels(data + "/train-labels-idx1-ubyte.gz", std::ios::binary);  // plain IDX
    const unsigned char header[8] = {0, 0, 8, 1, 0, 0, 0xea, 0x60};                  // 60000 labels
    labels.write(reinterpret_cast<const char*>(header), 8);
    std::string values(60000, '\3');
    values[123] = static_cast<char>(200);
    labels << values;
  }
  std::ofstream(dir.file("baddata.yaml")) << kTinyRun;
  const std::string db = dir.file("results.db");
  Command failed = run_moelab("run " + dir.file("baddata.yaml") + " db=" + db +
                              " checkpoint_dir=" + dir.file("ckpt") + " task.data_dir=" + data);
  INFO(failed.output);
  CHECK(failed.exit_code == 1);
  CHECK_THAT(failed.output, !Catch::Matchers::Contains("Exception raised from"));
  Store store(db);
  auto runs = store.query("SELECT status, error FROM runs");
  REQUIRE(runs.rows.size() == 1);
  CHECK(runs.rows[0][0].text == "failed");
  CHECK_THAT(runs.rows[0][1].text, Catch::Matchers::Contains("train-labels-idx1-ubyte.gz': label 200 "
                                                             "is not a class of 0..9"));

  CHECK(run_moelab("frobnicate").exit_code == 2);
  CHECK(run_moelab("--help").exit_code == 0);
}

}  // namespace moelab

namespace moelab {

TEST_CASE("bad command lines, files and values exit 2 naming what is wrong, changing nothing",
          "[smoke][errors]") {
  testing::TempDir dir;
  auto check_error = [](const Command& command, const std::vector<std::string>& parts) {
    INFO(command.output);
    CHECK(command.exit_code == 2);
    for (const auto& part : parts) CHECK_THAT(command.output, Catch::Matchers::Contains(part));
  };
  check_error(run_moelab("reprot x.db"), {"unknown command 'reprot'", "did you mean 'report'?"});

  // The query tool reads; writing needs --write.
  const std::string db = dir.file("r.db");
  {
    Store store(db);
    RunRecord record;
    record.config_hash = "h";
    record.task = "image";
    record.router = "topk";
    store.finish_run(store.create_run(record), RunStatus::Done, {{"test/accuracy", 0.5}});
  }
  check_error(run_moelab("query " + db + " \"DELETE FROM runs\""), {"r.db", "--write"});
  check_error(run_moelab("query " + db + " \"DROP TABLE metrics\""), {"--write"});
  CHECK(Store(db).query("SELECT COUNT(*) FROM runs").rows[0][0].integer == 1);
  CHECK(run_moelab("query " + db + " --csv \"SELECT COUNT(*) AS n FROM runs\"").output == "n\n1\n");
  CHECK(run_moelab("query " + db + " --write \"DELETE FROM summaries\"").exit_code == 0);
  CHECK(Store(db).query("SELECT COUNT(*) FROM summaries").rows[0][0].integer == 0);
  std::ofstream(dir.file("text.db")) << "not a database\n";
  check_error(run_moelab("query " + dir.file("text.db") + " \"SELECT COUNT(*) FROM runs\""), {"text.db"});

  // Reports and robustness tables name the key, metric or run they cannot find.
  check_error(run_moelab("report " + db + " --group-by router.nosuch"), {"router.nosuch"});
  check_error(run_moelab("report " + db + " --metric nosuch/x"), {"nosuch/x"});
  check_error(run_moelab("robustness " + db + " --baseline moe"), {"'moe' is not a group"});

  // .npy logits: a negative dimension, NaN values.
  {
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (-4, 3), }";
    while ((10 + header.size() + 1) % 64 != 0) header += ' ';
    header += '\n';
    std::ofstream out(dir.file("negative.npy"), std::ios::binary);
    out.write("\x93NUMPY\x01\x00", 8);
    const char length[2] = {static_cast<char>(header.size()), 0};
    out.write(length, 2);
    out << header << std::string(48, '\0');
  }
  check_error(run_moelab("route --router topk --logits " + dir.file("negative.npy")),
              {"negative.npy", "'-4'"});
  write_npy_float32(dir.file("nan.npy"), torch::tensor({{0.0f, std::nanf("")}}));
  check_error(run_moelab("route --router topk --logits " + dir.file("nan.npy") + " k=1"),
              {"nan.npy", "NaN"});

  // What a run would only find at its start is found before any row is written.
  std::ofstream(dir.file("late.yaml")) << kTinyRun << "db: " << dir.file("late.db") << "\n";
  const std::string late = "run " + dir.file("late.yaml") + " ";
  check_error(run_moelab(late + "task.patch=5"), {"late.yaml: task.patch = 5: must divide the image side 28"});
  check_error(run_moelab(late + "task.val_size=60000"), {"task.val_size = 60000", "60000 training images"});
  check_error(run_moelab(late + "task.data_dir=" + dir.file("none")),
              {"task.data_dir = '" + dir.file("none") + "'", "setup.sh"});
  std::ofstream(dir.file("lm.yaml")) << "task: {name: lm}\ndb: " << dir.file("late.db") << "\n";
  const std::string lm = "run " + dir.file("lm.yaml") + " ";
  check_error(run_moelab(lm + "task.corruptions=aaa:2"), {"task.corruptions = aaa:2", "entry 'aaa:2'"});
  check_error(run_moelab(lm + "task.data_path=" + dir.file("none")), {"task.data_path"});
  if (!torch::cuda::is_available()) {
    check_error(run_moelab(late + "device=cuda"), {"device = \"cuda\"", "no usable CUDA device"});
  }
  std::ofstream(dir.file("late_sweep.yaml")) << "extends: late.yaml\ngrid:\n  task.patch: [4, 5]\n";
  check_error(run_moelab("sweep plan " + dir.file("late_sweep.yaml")),
              {"[task.patch=5]", "must divide the image side 28"});
  CHECK_FALSE(std::filesystem::exists(dir.file("late.db")));  // no run row, no database

  // Cross-field rules name the file and the key's line.
  std::ofstream(dir.file("heads.yaml")) << "model: {dim: 30, heads: 4}\n";
  check_error(run_moelab("run " + dir.file("heads.yaml")), {"heads.yaml:1:25: model.heads = 4: must divide model.dim = 30"});
  std::ofstream(dir.file("k.yaml")) << "model:\n  moe: {experts: 4}\nrouter: {name: topk, k: 7}\n";
  check_error(run_moelab("run " + dir.file("k.yaml")), {"k.yaml:3:25: router.k = 7: must be <= model.moe.experts = 4"});

  // Values beyond what a machine can do.
  std::ofstream(dir.file("threads.yaml")) << "threads: 100000\n";
  check_error(run_moelab("run " + dir.file("threads.yaml")), {"threads", "100000"});
  std::ofstream(dir.file("seeds.yaml")) << "base: {train: {steps: 1}}\nseeds: 100000000\n";
  check_error(run_moelab("sweep plan " + dir.file("seeds.yaml")), {"seeds.yaml:2", "10000"});
  std::ofstream(dir.file("abc.yaml")) << "base: {train: {steps: 1}}\nseeds: abc\n";
  check_error(run_moelab("sweep plan " + dir.file("abc.yaml")), {"abc.yaml:2", "'abc'"});
  std::ofstream(dir.file("folder.yaml")) << "extends: .\nseeds: 1\n";
  check_error(run_moelab("sweep plan " + dir.file("folder.yaml")), {"folder.yaml:1", "not a run config file"});
  std::ofstream(dir.file("twice.yaml")) << "seeds: 1\nbase: {seed: 1}\nseeds: 2\n";
  check_error(run_moelab("sweep plan " + dir.file("twice.yaml")), {"twice.yaml:3:1", "duplicate key 'seeds'"});
}

TEST_CASE("moelab route prints a router's decision on .npy logits", "[smoke][route]") {
  testing::TempDir dir;
  // Token 0 prefers expert 1, token 1 expert 2, token 2 expert 0.
  write_npy_float32(dir.file("logits.npy"),
                    torch::tensor({{0.0f, 3.0f, 1.0f}, {1.0f, 0.0f, 2.0f}, {5.0f, 0.0f, 4.0f}}));
  Command topk = run_moelab("route --router topk --logits " + dir.file("logits.npy") + " k=2");
  INFO(topk.output);
  REQUIRE(topk.exit_code == 0);
  auto json = nlohmann::json::parse(topk.output);
  CHECK(json["indices"] == nlohmann::json::parse("[[1, 2], [2, 0], [0, 2]]"));
  const double g = 1.0 / (1.0 + std::exp(-2.0));  // softmax over logits {3, 1}
  CHECK(json["weights"][0][0].get<double>() == Approx(g));
  CHECK(json["weights"][0][1].get<double>() == Approx(1 - g));
  CHECK(json["tokens_per_expert"] == nlohmann::json::parse("[2, 1, 3]"));

  Command ec = run_moelab("route --router expert_choice --logits " + dir.file("logits.npy") +
                          " k=1");
  REQUIRE(ec.exit_code == 0);
  CHECK(nlohmann::json::parse(ec.output)["tokens_per_expert"] == nlohmann::json::parse("[1, 1, 1]"));

  Command ssr = run_moelab("route --router ssr --training --step 3 --logits " +
                           dir.file("logits.npy") + " p=1 k=1");
  REQUIRE(ssr.exit_code == 0);
  auto ssr_json = nlohmann::json::parse(ssr.output);
  CHECK(ssr_json["metrics"]["ssr_sinkhorn_step"].get<double>() == 1.0);
  CHECK(ssr_json["tokens_per_expert"] == nlohmann::json::parse("[1, 1, 1]"));  // balanced plan

  Command hash = run_moelab("route --router hash --logits " + dir.file("logits.npy"));
  CHECK(hash.exit_code == 2);
  CHECK_THAT(hash.output, Catch::Matchers::Contains("more than router logits"));
  Command bad_k = run_moelab("route --router topk --logits " + dir.file("logits.npy") + " k=4");
  CHECK(bad_k.exit_code == 2);
  CHECK_THAT(bad_k.output, Catch::Matchers::Contains("router.k = 4"));
}

TEST_CASE("moelab route carries a stateful router's state across batches, files and checkpoints",
          "[smoke][route]") {
  testing::TempDir dir;
  // Sigmoid affinities of [0.1, 0.05, 0]: s = [0.525, 0.512, 0.5]; every token takes expert 0.
  write_npy_float32(dir.file("z.npy"), torch::tensor({{0.1f, 0.05f, 0.0f}}).repeat({3, 1}));
  const std::string z = dir.file("z.npy");
  Command two = run_moelab("route --router deepseek_v3 --training --logits " + z + " --logits " +
                           z + " --save-state " + dir.file("state.pt") + " k=1 gamma=0.05 alpha=0");
  INFO(two.output);
  REQUIRE(two.exit_code == 0);
  auto json = nlohmann::json::parse(two.output);
  const auto bias = [](const nlohmann::json& state) {
    return state["selection_bias"].get<std::vector<double>>();
  };
  CHECK(bias(json["state_before"]) == std::vector<double>{0, 0, 0});
  REQUIRE(json["batches"].size() == 2);
  // Batch 1: loads [3, 0, 0], mean 1: b += 0.05 sign(1 - load) = [-0.05, 0.05, 0.05].
  CHECK(json["batches"][0]["tokens_per_expert"] == nlohmann::json::parse("[3, 0, 0]"));
  const auto after_one = bias(json["batches"][0]["state"]);
  CHECK(after_one[0] == Approx(-0.05));
  CHECK(after_one[1] == Approx(0.05));
  CHECK(after_one[2] == Approx(0.05));
  // Batch 2: biased scores [0.475, 0.5625, 0.55]: expert 1; b += 0.05 [1, -1, 1] = [0, 0, 0.1].
  CHECK(json["batches"][1]["tokens_per_expert"] == nlohmann::json::parse("[0, 3, 0]"));
  const auto after_two = bias(json["state"]);
  CHECK(after_two[0] == Approx(0.0).margin(1e-7));
  CHECK(after_two[1] == Approx(0.0).margin(1e-7));
  CHECK(after_two[2] == Approx(0.1));

  // From the saved state, in evaluation: the bias steers the choice and does not move.
  Command resumed = run_moelab("route --router deepseek_v3 --state " + dir.file("state.pt") +
                               " --logits " + z + " k=1 gamma=0.05 alpha=0");
  REQUIRE(resumed.exit_code == 0);
  auto from_file = nlohmann::json::parse(resumed.output);
  CHECK(bias(from_file["state_before"])[2] == Approx(0.1));
  CHECK(from_file["tokens_per_expert"] == nlohmann::json::parse("[0, 0, 3]"));  // 0.6 > 0.525
  CHECK(bias(from_file["state"])[2] == Approx(0.1));
  Command wrong = run_moelab("route --router loss_free --state " + dir.file("state.pt") +
                             " --logits " + z + " k=1");
  CHECK(wrong.exit_code == 2);
  CHECK_THAT(wrong.output, Catch::Matchers::Contains("state.pt") &&
                               Catch::Matchers::Contains("not a state of this router") &&
                               Catch::Matchers::Contains("deepseek_v3"));

  // From a run's checkpoint: 6 steps of gamma 0.01 leave each bias a whole number of
  // gamma steps, at most 6, not all zero.
  std::string tiny = kTinyRun;
  const std::string topk = "router: {name: topk, k: 2, aux_coef: 0.01}";
  tiny.replace(tiny.find(topk), topk.size(), "router: {name: deepseek_v3, gamma: 0.01}");
  std::ofstream(dir.file("tiny.yaml")) << tiny;
  Command run = run_moelab("run " + dir.file("tiny.yaml") + " db=" + dir.file("r.db") +
                           " checkpoint_dir=" + dir.file("ckpt"));
  REQUIRE(run.exit_code == 0);
  std::string checkpoint;
  for (const auto& entry : std::filesystem::directory_iterator(dir.file("ckpt"))) {
    checkpoint = entry.path().string();
  }
  write_npy_float32(dir.file("z4.npy"), torch::zeros({2, 4}));
  Command from_run = run_moelab("route --router deepseek_v3 --checkpoint " + checkpoint +
                                " --layer 1 --logits " + dir.file("z4.npy") + " gamma=0.01");
  INFO(from_run.output);
  REQUIRE(from_run.exit_code == 0);
  double moved = 0.0;
  for (double b : bias(nlohmann::json::parse(from_run.output)["state_before"])) {
    CHECK(std::abs(b / 0.01 - std::round(b / 0.01)) < 1e-3);
    CHECK(std::abs(b) <= 0.06 + 1e-6);
    moved += std::abs(b);
  }
  CHECK(moved > 0.0);
  Command dense_block = run_moelab("route --router deepseek_v3 --checkpoint " + checkpoint +
                                   " --layer 0 --logits " + dir.file("z4.npy"));
  CHECK(dense_block.exit_code == 2);
  CHECK_THAT(dense_block.output, Catch::Matchers::Contains("block 0") &&
                                     Catch::Matchers::Contains("dense FFN"));
}

TEST_CASE("eval.router_override evaluates the trained model under another rule", "[smoke]") {
  testing::TempDir dir;
  std::ofstream(dir.file("tiny.yaml")) << kTinyRun;
  const std::string db = dir.file("results.db");
  Command run = run_moelab("run " + dir.file("tiny.yaml") + " db=" + db + " checkpoint_dir=" + dir.file("ckpt") +
                           " eval.router_override.name=expert_choice eval.router_override.k=2");
  INFO(run.output);
  REQUIRE(run.exit_code == 0);
  Store store(db);
  auto splits = store.query("SELECT DISTINCT split FROM metrics WHERE name = 'accuracy' ORDER BY split");
  std::vector<std::string> names;
  for (const auto& row : splits.rows) names.push_back(row[0].text);
  CHECK(names == std::vector<std::string>{"test", "test@expert_choice", "val", "val@expert_choice"});
  CHECK(store.query("SELECT COUNT(*) FROM summaries WHERE name = 'test@expert_choice/accuracy'")
            .rows[0][0].integer == 1);
}

}  // namespace moelab

namespace moelab {

TEST_CASE("every registered router trains in the quickstart model and is scored on corruptions",
          "[smoke][routers][.slow]") {
  testing::TempDir dir;
  const std::string db = dir.file("routers.db");
  for (const auto& entry : router_registry()) {
    DYNAMIC_SECTION("router " << entry.name) {
      RunConfig config = parse_run_config(
          R"(task: {name: image, train_limit: 256, val_size: 200, corruptions: "fmnist_c,cifar_c",
       corruption_examples: 20}
model: {dim: 16, depth: 2, heads: 2, moe: {experts: 4, expert_hidden: 16}}
train: {steps: 4, batch_size: 16, log_every: 2, warmup_steps: 1}
eval: {max_examples: 100}
)",
          "routers.yaml", {std::string("router.name=") + entry.name, "db=" + db, "checkpoint_dir=" + dir.file("ckpt")});
      RunOutcome outcome = execute_run(config);
      INFO(outcome.error);
      CHECK(outcome.status == RunStatus::Done);
      Store store(db);
      auto done = store.query(std::string("SELECT COUNT(*) FROM runs WHERE status = 'done' AND "
                                          "router = '") + entry.name + "'");
      CHECK(done.rows[0][0].integer == 1);
      std::map<std::string, double> summaries(outcome.summaries.begin(), outcome.summaries.end());
      CHECK(summaries.count("fmnist_c/mean_error") == 1);
      CHECK(summaries.count("cifar_c/mean_error") == 1);
    }
  }
}

}  // namespace moelab

namespace moelab {

TEST_CASE("a run's rows hold clean and corrupted metrics and moelab robustness scores them",
          "[smoke][corruption][.slow]") {
  testing::TempDir dir;
  std::ofstream(dir.file("tiny.yaml")) << kTinyRun;
  const std::string db = dir.file("results.db");
  // 40 steps: enough that the model's errors under corruption differ from its clean error
  // (after 6 it predicts one class everywhere, and relative mCE is 0/0).
  const std::string common = " db=" + db + " checkpoint_dir=" + dir.file("ckpt") +
                             " task.corruptions=fmnist_c,cifar_c task.corruption_examples=60 "
                             "train.steps=40 train.eval_every=0";
  REQUIRE(run_moelab("run " + dir.file("tiny.yaml") + common).exit_code == 0);
  REQUIRE(run_moelab("run " + dir.file("tiny.yaml") + common + " router.name=ssr").exit_code == 0);
  Store store(db);
  auto splits = store.query(
      "SELECT COUNT(DISTINCT split) FROM metrics WHERE run_id = 1 AND name = 'accuracy' AND "
      "(split LIKE 'fmnist_c:%' OR split LIKE 'cifar_c:%')");
  CHECK(splits.rows[0][0].integer == 15 + 15 * 5);
  auto means = store.query("SELECT COUNT(*) FROM summaries WHERE run_id = 1 AND name IN "
                           "('fmnist_c/mean_error', 'cifar_c/mean_error', 'cifar_c:fog/mean_error')");
  CHECK(means.rows[0][0].integer == 3);

  Command scores = run_moelab("robustness " + db + " --suite cifar_c --baseline topk --format csv");
  INFO(scores.output);
  REQUIRE(scores.exit_code == 0);
  CHECK_THAT(scores.output, Catch::Matchers::Contains("router,measure,n,mean"));
  CHECK_THAT(scores.output, Catch::Matchers::Contains("topk,clean_error,1,"));
  CHECK_THAT(scores.output, Catch::Matchers::Contains("ssr,mCE,1,"));
  // The baseline against itself: mCE and relative mCE are exactly 1.
  CHECK_THAT(scores.output, Catch::Matchers::Contains("topk,mCE,1,1,"));
  CHECK_THAT(scores.output, Catch::Matchers::Contains("topk,relative_mCE,1,1,"));
}

TEST_CASE("every registered router trains in the character LM", "[smoke][routers][lm][.slow]") {
  testing::TempDir dir;
  const std::string sentence = "It was the best of times, it was the worst of times.\n";
  std::string text;
  for (int i = 0; i < 60; ++i) text += sentence;
  for (const char* name : {"train.txt", "valid.txt", "test.txt"}) std::ofstream(dir.file(name)) << text;
  const std::string db = dir.file("lm.db");
  for (const auto& entry : router_registry()) {
    DYNAMIC_SECTION("router " << entry.name) {
      RunConfig config = parse_run_config(
          R"(task: {name: lm, corpus: text_files, seq_len: 16}
model: {dim: 16, depth: 2, heads: 2, moe: {experts: 4, expert_hidden: 16}}
train: {steps: 4, batch_size: 4, log_every: 2, warmup_steps: 1}
eval: {max_examples: 8}
)",
          "lm_routers.yaml",
          {std::string("router.name=") + entry.name, "task.data_path=" + dir.file(""),
           "db=" + db, "checkpoint_dir=" + dir.file("ckpt")});
      RunOutcome outcome = execute_run(config);
      INFO(outcome.error);
      if (std::string(entry.name) == "soft_moe") {  // mixes tokens across positions
        CHECK(outcome.status == RunStatus::Failed);
        CHECK_THAT(outcome.error, Catch::Matchers::Contains("causal"));
      } else {
        CHECK(outcome.status == RunStatus::Done);
      }
    }
  }
}

}  // namespace moelab
