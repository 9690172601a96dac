// Checkpoint -> resume continues a CPU run bit for bit, for routers with random noise,
// dropout, host-side stage counters and gradient-free buffers; divergence is recorded.
#include <map>

#include "harness/train/checkpoint.h"
#include "harness/convert/conversion.h"
#include "harness/run/runner.h"
#include "harness/store/store.h"
#include "harness/train/trainer.h"
#include "tasks/image/image_task.h"
#include "test_util.h"

namespace moelab {
namespace {

// Asks the trainer to stop once batch `stop_after` has been served.
class InterruptingTask : public ImageTask {
 public:
  InterruptingTask(const ImageOptions& options, const RunConfig& config, int64_t stop_after)
      : ImageTask(options, config), stop_after_(stop_after) {}
  Batch train_batch(int64_t step, int64_t batch_size) override {
    if (step == stop_after_) request_interrupt();
    return ImageTask::train_batch(step, batch_size);
  }

 private:
  int64_t stop_after_;
};

RunConfig tiny_config(const std::string& router, const std::string& checkpoint_dir,
                      const std::string& db) {
  return parse_run_config(R"(seed: 3
task: {name: image, train_limit: 256, val_size: 200}
model: {dim: 16, depth: 2, heads: 2, dropout: 0.1, moe: {experts: 4, expert_hidden: 16}}
train: {steps: 10, batch_size: 16, log_every: 2, warmup_steps: 2}
eval: {max_examples: 100}
)",
                          "ckpt.yaml",
                          {router, "checkpoint_dir=" + checkpoint_dir, "db=" + db});
}

struct Trained {
  MetricValues summaries;
  std::map<std::string, torch::Tensor> state;
};

// Trains on run `run_id` (0: a new run) of config.db; with `parent`, as a converted run.
Trained train(const RunConfig& config, Task& task, bool resume, int64_t init_seed,
              const RunSpec* parent = nullptr, int64_t run_id = 0) {
  Store store(config.db);
  RunSpec run(config, "");
  run.run_id = run_id != 0 ? run_id : store.create_run(make_run_record(run));
  MetricLog log(store, run.run_id);
  torch::manual_seed(static_cast<uint64_t>(init_seed));
  auto model = task.build_model(config);
  std::unique_ptr<Conversion> conversion;
  if (parent) conversion = std::make_unique<Conversion>(run, *parent, task, store, torch::kCPU);
  Trained out;
  out.summaries = train_and_evaluate(run, task, *model, log, torch::kCPU, resume, conversion.get());
  for (const auto& item : model->named_parameters()) out.state[item.key()] = item.value().clone();
  for (const auto& item : model->named_buffers()) out.state[item.key()] = item.value().clone();
  return out;
}

}  // namespace

TEST_CASE("a run interrupted and resumed from its checkpoint equals the uninterrupted run",
          "[checkpoint]") {
  auto router = GENERATE(as<std::string>{}, "router.name=topk", "router.name=noisy_topk",
                         "router.name=stablemoe", "router.name=loss_free", "router.name=ssr",
                         "router.name=quantile", "router.name=deepseek_v3", "router.name=remoe",
                         "train.grad_accum=2", "task.augment=crop_flip",
                         "train.budget=2200 tokens");
  INFO(router);
  testing::TempDir dir;
  std::vector<std::string> overrides = {router};
  if (router == "router.name=stablemoe") overrides.push_back("router.stage1_steps=4");
  if (router == "router.name=ssr") overrides.push_back("router.p=0.5");
  RunConfig straight = tiny_config(router, dir.file("a"), dir.file("a.db"));
  RunConfig stopped = tiny_config(router, dir.file("b"), dir.file("b.db"));
  for (const auto& extra : overrides) {
    straight = parse_run_config(canonical_yaml(straight), "x", {extra});
    stopped = parse_run_config(canonical_yaml(stopped), "x", {extra});
  }
  REQUIRE(config_hash(straight) == config_hash(stopped));  // paths are not identity

  ImageTask plain(options_as<ImageOptions>(*straight.task.options), straight);
  const Trained reference = train(straight, plain, false, straight.seed);

  InterruptingTask interrupting(options_as<ImageOptions>(*stopped.task.options), stopped, 5);
  CHECK_THROWS_AS(train(stopped, interrupting, false, stopped.seed), InterruptedError);
  clear_interrupt_request();
  CHECK(checkpoint_step(RunSpec(stopped, "").checkpoint) == 6);

  ImageTask fresh(options_as<ImageOptions>(*stopped.task.options), stopped);
  const Trained resumed = train(stopped, fresh, true, /*a different init, overwritten*/ 99);
  for (const auto& [name, tensor] : reference.state) {
    INFO(name);
    CHECK(tensor.equal(resumed.state.at(name)));
  }
  std::map<std::string, double> a(reference.summaries.begin(), reference.summaries.end());
  std::map<std::string, double> b(resumed.summaries.begin(), resumed.summaries.end());
  CHECK(a.at("test/accuracy") == b.at("test/accuracy"));
  CHECK(a.at("test/loss") == b.at("test/loss"));
  CHECK(a.at("train/steps") == b.at("train/steps"));
  // 16 images of 16 patches a step: 2200 tokens are spent at step 9 (2304), before train.steps.
  if (router == "train.budget=2200 tokens") CHECK(b.at("train/steps") == 9);
}

TEST_CASE("grad_accum 4 x batch 32 gives the same updates as batch 128 on the same examples",
          "[checkpoint][accum]") {
  // Plain SGD, so that an update is the gradient times the learning rate: well conditioned,
  // and sensitive to the accumulated gradient's scale (Adam would hide a wrong 1/grad_accum,
  // and turns the float noise of a gradient that is zero in exact arithmetic, such as the key
  // part of the qkv bias, into full +-lr steps that differ between CPU types).
  testing::TempDir dir;
  auto config = [&](const std::string& name, const std::vector<std::string>& batch) {
    // topk has no balance loss, which is taken per micro-batch (train.aux_scope).
    RunConfig base = tiny_config("router.name=topk", dir.file(name), dir.file(name + ".db"));
    std::vector<std::string> overrides = {"model.dropout=0", "train.steps=4", "train.grad_clip=0",
                                          "train.optimizer=sgd", "train.beta1=0",
                                          "train.weight_decay=0", "train.lr=0.1",
                                          "train.warmup_steps=0"};
    overrides.insert(overrides.end(), batch.begin(), batch.end());
    return parse_run_config(canonical_yaml(base), "x", overrides);
  };
  const RunConfig whole = config("whole", {"train.batch_size=128"});
  const RunConfig parts = config("parts", {"train.batch_size=32", "train.grad_accum=4"});
  ImageTask whole_task(options_as<ImageOptions>(*whole.task.options), whole);
  ImageTask parts_task(options_as<ImageOptions>(*parts.task.options), parts);
  torch::manual_seed(static_cast<uint64_t>(whole.seed));
  const auto initial = whole_task.build_model(whole)->named_parameters();
  const Trained a = train(whole, whole_task, false, whole.seed);
  const Trained b = train(parts, parts_task, false, parts.seed);
  double largest_update = 0.0;
  for (const auto& item : initial) {
    largest_update = std::max(
        largest_update, (a.state.at(item.key()) - item.value()).abs().max().item<double>());
  }
  REQUIRE(largest_update > 1e-3);  // the steps moved the weights
  for (const auto& item : initial) {
    INFO(item.key());
    const auto update_whole = a.state.at(item.key()) - item.value();
    const auto update_parts = b.state.at(item.key()) - item.value();
    CHECK(update_parts.allclose(update_whole, 1e-3, 1e-5 * largest_update));
  }
  // The logged training loss is the mean over the step's examples in both.
  Store whole_store(whole.db), parts_store(parts.db);
  const auto loss = [](Store& store) {
    for (const auto& [name, value] : store.metrics_at(1, "train", 4)) {
      if (name == "loss") return value;
    }
    FAIL("no training loss logged at step 4");
    return 0.0;
  };
  CHECK(loss(parts_store) == Approx(loss(whole_store)).epsilon(1e-5));
  // aux_scope global_batch needs accumulation, and says so.
  CHECK_THROWS_WITH(config("bad", {"train.aux_scope=global_batch"}),
                    Catch::Matchers::Contains("train.aux_scope"));
}

TEST_CASE("a converted run interrupted and resumed equals the uninterrupted one",
          "[checkpoint][convert]") {
  testing::TempDir dir;
  auto converting = [&](const std::string& checkpoints) {
    RunConfig base = tiny_config("router.name=dot_moe", dir.file(checkpoints), dir.file("c.db"));
    return parse_run_config(canonical_yaml(base), "x",
                            {"model.ffn_hidden=64", "convert.method=dot_moe",
                             "convert.dense_steps=6", "convert.calibration_tokens=128"});
  };
  RunConfig straight = converting("a"), stopped = converting("b");
  RunConfig dense = dense_parent_config(straight);
  dense.checkpoint_dir = dir.file("p");
  const RunOutcome parent_run = execute_run(dense);
  REQUIRE(parent_run.status == RunStatus::Done);
  RunSpec parent(dense, "");
  parent.run_id = parent_run.run_id;

  ImageTask plain(options_as<ImageOptions>(*straight.task.options), straight);
  const Trained reference = train(straight, plain, false, straight.seed, &parent);

  InterruptingTask interrupting(options_as<ImageOptions>(*stopped.task.options), stopped, 5);
  Store store(stopped.db);
  const int64_t run_id = store.create_run(make_run_record(RunSpec(stopped, "")));
  CHECK_THROWS_AS(train(stopped, interrupting, false, stopped.seed, &parent, run_id),
                  InterruptedError);
  clear_interrupt_request();
  ImageTask fresh(options_as<ImageOptions>(*stopped.task.options), stopped);
  const Trained resumed = train(stopped, fresh, true, 99, &parent, run_id);
  for (const auto& [name, tensor] : reference.state) {
    INFO(name);
    CHECK(tensor.equal(resumed.state.at(name)));  // the affinities and the exported experts too
  }
  std::map<std::string, double> a(reference.summaries.begin(), reference.summaries.end());
  std::map<std::string, double> b(resumed.summaries.begin(), resumed.summaries.end());
  for (const char* key : {"test/accuracy", "retention/test/accuracy", "export/recon_err",
                          "convert/recon_err_oracle"}) {
    INFO(key);
    CHECK(a.at(key) == b.at(key));
  }
}

TEST_CASE("moelab run --resume continues the interrupted run in the database", "[checkpoint]") {
  testing::TempDir dir;
  RunConfig config = tiny_config("router.name=topk", dir.file("ckpt"), dir.file("r.db"));
  // Nothing to resume yet: a usage error, and no run is created.
  CHECK_THROWS_AS(execute_run(config, true), ConfigError);
  {
    Store store(config.db);
    RunRecord record;
    record.config_hash = config_hash(config);
    record.task = "image";
    record.router = "topk";
    const int64_t id = store.create_run(record);
    store.log_metrics(id, {{2, "train", "loss", 1.0}, {8, "train", "loss", 0.5}});
    store.finish_run(id, RunStatus::Interrupted, {}, "interrupted after step 6");
  }
  ImageTask task(options_as<ImageOptions>(*config.task.options), config);
  torch::manual_seed(3);
  auto model = task.build_model(config);
  auto optimizer = torch::optim::AdamW(model->parameters());
  save_checkpoint(RunSpec(config, "").checkpoint, *model, optimizer, {6, 0.0});

  RunOutcome outcome = execute_run(config, true);
  INFO(outcome.error);
  CHECK(outcome.status == RunStatus::Done);
  CHECK(outcome.run_id == 1);
  Store store(config.db);
  // Rows after the checkpoint step were dropped and logged again by the resumed run.
  auto rows = store.query("SELECT step FROM metrics WHERE split = 'train' AND name = 'loss' "
                          "ORDER BY step");
  std::vector<int64_t> steps;
  for (const auto& row : rows.rows) steps.push_back(row[0].integer);
  CHECK(steps == std::vector<int64_t>{2, 8, 10});
  CHECK(store.query("SELECT status FROM runs").rows[0][0].text == "done");
}

TEST_CASE("a NaN loss ends the run as diverged with the step", "[checkpoint]") {
  testing::TempDir dir;
  RunConfig config = tiny_config("router.name=topk", dir.file("ckpt"), dir.file("d.db"));
  config.train.lr = 1e30;  // valid, and enough to blow the weights up
  config.train.grad_clip = 0;
  config.train.warmup_steps = 0;
  RunOutcome outcome = execute_run(config);
  CHECK(outcome.status == RunStatus::Diverged);
  CHECK_THAT(outcome.error, Catch::Matchers::Contains("at step"));
  Store store(config.db);
  CHECK(store.query("SELECT status FROM runs").rows[0][0].text == "diverged");
}

}  // namespace moelab
