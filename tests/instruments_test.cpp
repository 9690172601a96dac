// The routing probe's instruments (harness/model/routing_diagnostics.h, harness/train/
// routing_probe.h, `moelab trace`): golden values of the specialisation, collapse and
// fluctuation measures on hand-worked cases; the constructed cases of the issue (identical
// experts: similarity 1; a router that routes by class: NMI 1) through the MoE layer; every
// router of the registry probed; and a traced run end to end: its rows, its files, `moelab
// trace` in each format, and training that is bit for bit the run without traces.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "harness/config/config.h"
#include "harness/core/npy.h"
#include "harness/model/moe_layer.h"
#include "harness/model/routing_diagnostics.h"
#include "harness/store/store.h"
#include "harness/train/routing_probe.h"
#include "registry_layer.h"
#include "routers/registry.h"
#include "test_util.h"

namespace moelab {
namespace {

torch::Tensor longs(std::vector<int64_t> values) { return torch::tensor(values, torch::kLong); }

// A top-1 layer over E experts of width D = E whose router's gate is the identity: a token
// x = one-hot(c) goes to expert c.
MoELayer class_routed_layer(int64_t experts) {
  const RunConfig config = parse_run_config("", "defaults.yaml",
                                            {"router.name=topk", "router.k=1", "router.aux_coef=0",
                                             "model.moe.capacity_factor=0",
                                             fmt::format("model.moe.experts={}", experts)});
  MoELayer layer(experts, config.model.moe,
                 make_router(config.router, RouterShape{experts, experts, 0, 0}));
  torch::NoGradGuard no_grad;
  std::dynamic_pointer_cast<LogitRouter>(layer->router_ptr())->gate()->weight.copy_(torch::eye(experts) * 10);
  return layer;
}

// The registry's MoE layer under router `name`, an evaluation context for 64 tokens and their
// inputs [64, D] (the global generator seeded first).
struct RegistryCase {
  MoELayer layer;
  RouteContext ctx;
  torch::Tensor x;
};
RegistryCase registry_case(const std::string& name) {
  MoELayer layer = testing::registry_layer({"router.name=" + name});
  torch::manual_seed(0);
  RouteContext ctx = testing::context_for_64_tokens(/*training=*/false);
  return {layer, ctx, torch::randn({64, testing::kLayerDim})};
}

LayerProbe probe_forward(MoELayer& layer, const torch::Tensor& x) {
  RoutingRecord record;
  RouteContext ctx;
  ctx.record = &record;
  ctx.probe = true;
  torch::NoGradGuard no_grad;
  layer->forward(x, ctx);
  REQUIRE(record.probes.size() == 1);
  return record.probes[0];
}

}  // namespace

TEST_CASE("mean_pairwise_cosine: 1 for identical experts, hand-worked otherwise", "[instruments]") {
  const auto same = torch::randn({1, 5, 8}).expand({4, 5, 8});
  CHECK(mean_pairwise_cosine(same).item<double>() == Approx(1.0));
  // One token, three experts: (1, 0), (0, 1), (1, 1): cosines 0, 1/sqrt 2, 1/sqrt 2.
  const auto three = torch::tensor({1.0F, 0.0F, 0.0F, 1.0F, 1.0F, 1.0F}).view({3, 1, 2});
  CHECK(mean_pairwise_cosine(three).item<double>() == Approx(std::sqrt(2.0) / 3.0));
  // Opposite outputs: -1; the scale of an output does not matter.
  const auto opposite = torch::tensor({2.0F, 1.0F, -4.0F, -2.0F}).view({2, 1, 2});
  CHECK(mean_pairwise_cosine(opposite).item<double>() == Approx(-1.0));
  // Tokens are averaged: token 0 identical (1), token 1 orthogonal (0).
  const auto mixed = torch::tensor({1.0F, 0.0F, 1.0F, 0.0F, 1.0F, 0.0F, 0.0F, 1.0F}).view({2, 2, 2});
  CHECK(mean_pairwise_cosine(mixed).item<double>() == Approx(0.5));
  CHECK_FALSE(mean_pairwise_cosine(torch::ones({1, 3, 2})).defined());  // one expert: no pair
}

TEST_CASE("normalized_mutual_information against the formula worked by hand", "[instruments]") {
  CHECK(*normalized_mutual_information(torch::tensor({2.0, 0.0, 0.0, 2.0}).view({2, 2})) == Approx(1.0));
  CHECK(*normalized_mutual_information(torch::tensor({1.0, 1.0, 1.0, 1.0}).view({2, 2})) ==
        Approx(0.0).margin(1e-12));
  // Counts [[2, 1], [0, 1]] of 4: p = [[1/2, 1/4], [0, 1/4]], p(x) = (3/4, 1/4), p(y) = (1/2, 1/2).
  //   I = 1/2 ln(4/3) + 1/4 ln(2/3) + 1/4 ln 2;  H(x) = -(3/4 ln 3/4 + 1/4 ln 1/4);  H(y) = ln 2.
  const double mutual = 0.5 * std::log(4.0 / 3.0) + 0.25 * std::log(2.0 / 3.0) + 0.25 * std::log(2.0);
  const double hx = -(0.75 * std::log(0.75) + 0.25 * std::log(0.25)), hy = std::log(2.0);
  CHECK(*normalized_mutual_information(torch::tensor({2.0, 1.0, 0.0, 1.0}).view({2, 2})) ==
        Approx(mutual / ((hx + hy) / 2)));  // 0.343712
  // Experts that split one label's tokens carry no information about the label: H(y) = 0, I = 0.
  CHECK(*normalized_mutual_information(torch::tensor({3.0, 5.0}).view({2, 1})) == Approx(0.0).margin(1e-12));
  CHECK_FALSE(normalized_mutual_information(torch::tensor({4.0}).view({1, 1})).has_value());
}

TEST_CASE("selected_sets and changed_share on a hand-made 4-token case", "[instruments]") {
  // Assignments in any order: token 0 {2, 0}, token 1 {1}, token 2 none, token 3 {3, 1}.
  const auto sets = selected_sets(longs({3, 0, 1, 0, 3}), longs({1, 2, 1, 0, 3}), 4);
  CHECK(testing::as_vector(sets.flatten()) == std::vector<int64_t>{0, 2, 1, -1, -1, -1, 1, 3});
  CHECK(changed_share(sets, sets).item<double>() == 0.0);
  // Token 0 now {0, 1} (changed), token 1 {1} (same, written in a wider table), token 2 {0}
  // (changed from none), token 3 {1, 3} (same): half the tokens changed.
  const auto later = selected_sets(longs({0, 0, 1, 2, 3, 3}), longs({1, 0, 1, 0, 3, 1}), 4);
  CHECK(changed_share(sets, later).item<double>() == Approx(0.5));
  // Different widths: top-1 {0} against top-2 {0, 1} is a change.
  CHECK(changed_share(selected_sets(longs({0}), longs({0}), 1), selected_sets(longs({0, 0}), longs({0, 1}), 1))
            .item<double>() == 1.0);
}

TEST_CASE("the MoE layer's probe: routing by class gives NMI 1, identical experts cosine 1",
          "[instruments]") {
  const int64_t experts = 4;
  MoELayer layer = class_routed_layer(experts);
  const auto labels = longs({0, 1, 2, 3, 3, 2, 1, 0, 1, 1});
  const auto x = torch::one_hot(labels, experts).to(torch::kFloat);  // [10, 4]
  const LayerProbe probe = probe_forward(layer, x);
  CHECK(testing::as_vector(probe.expert) == testing::as_vector(labels));
  const auto counts = torch::bincount(probe.expert * experts + labels.index_select(0, probe.token), {},
                                      experts * experts).view({experts, experts});
  CHECK(*normalized_mutual_information(counts) == Approx(1.0));
  // Distinct random experts are not collapsed; copies of one expert are.
  CHECK(probe.expert_cosine.item<double>() < 0.9);
  {
    torch::NoGradGuard no_grad;
    for (const char* name : {"w_in", "b_in", "w_out", "b_out"}) {  // every expert a copy of expert 0
      auto parameter = layer->named_parameters(/*recurse=*/false)[name];
      parameter.copy_(parameter.narrow(0, 0, 1).expand_as(parameter).clone());
    }
  }
  CHECK(probe_forward(layer, x).expert_cosine.item<double>() == Approx(1.0));
}

TEST_CASE("every router of the registry is probed the same way by the MoE layer",
          "[instruments][registry]") {
  for (const auto& entry : router_registry()) {
    DYNAMIC_SECTION("router " << entry.name) {
      auto [layer, ctx, x] = registry_case(entry.name);
      RoutingRecord record;
      ctx.record = &record;
      ctx.probe = true;
      torch::NoGradGuard no_grad;
      RouteContext quiet = ctx;
      quiet.record = nullptr;
      quiet.probe = false;
      const auto plain = layer->forward(x, quiet);
      // Probing does not change the layer's output.
      CHECK(torch::equal(layer->forward(x, ctx), plain));
      REQUIRE(record.probes.size() == 1);
      const LayerProbe& probe = record.probes[0];
      CHECK(probe.tokens == 64);
      REQUIRE(probe.expert_cosine.defined());
      CHECK(std::abs(probe.expert_cosine.item<double>()) <= 1.0 + 1e-6);
      if (entry.name == std::string("soft_moe")) {
        CHECK_FALSE(probe.token.defined());  // soft routing has no assignments to trace
      } else {
        REQUIRE(probe.token.defined());
        CHECK(probe.expert.min().item<int64_t>() >= 0);
        CHECK(probe.expert.max().item<int64_t>() < probe.choices);
        CHECK(probe.token.numel() == probe.weight.numel());
      }
    }
  }
}

TEST_CASE("routing replay: every router's recorded decisions replayed give its forward bit for bit",
          "[instruments][replay][registry]") {
  for (const auto& entry : router_registry()) {
    DYNAMIC_SECTION("router " << entry.name) {
      auto [layer, ctx, x] = registry_case(entry.name);
      torch::NoGradGuard no_grad;
      const auto other = torch::randn({64, testing::kLayerDim});
      RouteReplay decisions;
      ctx.replay = &decisions;
      const auto recorded = layer->forward(x, ctx);
      REQUIRE(decisions.routes.count(0) == 1);
      CHECK(decisions.routes.at(0).tokens == 64);
      decisions.mode = RouteReplay::Mode::Replay;
      CHECK(torch::equal(layer->forward(x, ctx), recorded));
      // Another input of the same tokens takes the recorded experts: no flip against them.
      RoutingRecord record;
      ctx.record = &record;
      ctx.probe = true;
      layer->forward(other, ctx);
      const RouteResult& route = decisions.routes.at(0).route;
      if (route.token.defined()) {
        REQUIRE(record.probes.size() == 1);
        const auto replayed = selected_sets(record.probes[0].token, record.probes[0].expert, 64);
        CHECK(changed_share(selected_sets(route.token, route.expert, 64), replayed).item<double>() == 0.0);
      }
      // Decisions for 64 tokens cannot route 32.
      CHECK_THROWS_WITH(layer->forward(other.narrow(0, 0, 32), ctx),
                        Catch::Contains("a decision for 64 tokens, an input of 32"));
    }
  }
}

namespace {

const char* kTracedRun = R"(name: traced
seed: 2
task: {name: image, patch: 7, train_limit: 256, val_size: 100}
model: {dim: 16, depth: 2, heads: 2, moe: {experts: 4, expert_hidden: 16, layers: "1"}}
router: {name: topk, k: 2}
train: {steps: 4, batch_size: 16, log_every: 1, warmup_steps: 1}
eval: {max_examples: 50, probe_examples: 6}
)";

std::map<std::pair<int64_t, std::string>, double> probe_rows(Store& store, const std::string& where) {
  std::map<std::pair<int64_t, std::string>, double> rows;
  for (const auto& row : store.query("SELECT step, name, value FROM metrics WHERE " + where).rows) {
    rows[{row[0].integer, row[1].text}] = row[2].number();
  }
  return rows;
}

}  // namespace

TEST_CASE("a traced run: probe rows, trace files, moelab trace, and training unchanged",
          "[instruments][trace]") {
  testing::TempDir dir;
  std::ofstream(dir.file("run.yaml")) << kTracedRun;
  const std::string traced_db = dir.file("traced.db"), plain_db = dir.file("plain.db");
  const auto traced = testing::run_moelab("run " + dir.file("run.yaml") + " train.trace_every=2 db=" +
                                          traced_db + " checkpoint_dir=" + dir.file("ckpt"));
  INFO(traced.output);
  REQUIRE(traced.exit_code == 0);
  const auto plain = testing::run_moelab("run " + dir.file("run.yaml") + " db=" + plain_db +
                                         " checkpoint_dir=" + dir.file("ckpt_plain"));
  REQUIRE(plain.exit_code == 0);

  Store traced_store(traced_db, Store::Access::ReadOnly), plain_store(plain_db, Store::Access::ReadOnly);
  SECTION("tracing changes nothing the run trains or evaluates") {
    const auto other = "split <> 'probe' AND name NOT LIKE '%seconds%' AND name NOT LIKE '%route_ms%'";
    CHECK(probe_rows(traced_store, other) == probe_rows(plain_store, other));
  }
  const auto rows = probe_rows(traced_store, "split = 'probe'");
  SECTION("probe rows at steps 0, 2 and the end; the plain run has only the end's, untraced") {
    // 6 images of 16 patches: 96 probe tokens in layer 1 (the only MoE layer).
    for (int64_t step : {0, 2, 4}) {
      INFO("step " << step);
      CHECK(rows.at({step, "moe/l1/trace_tokens"}) == 96.0);
      CHECK(rows.at({step, "moe/l1/spec_nmi"}) >= 0.0);
      CHECK(rows.at({step, "moe/l1/spec_nmi"}) <= 1.0);
      CHECK(rows.at({step, "moe/spec_nmi"}) == rows.at({step, "moe/l1/spec_nmi"}));
      CHECK(std::abs(rows.at({step, "moe/l1/expert_cosine"})) <= 1.0);
    }
    CHECK(rows.count({0, "moe/l1/routing_fluctuation"}) == 0);  // nothing before step 0
    const auto plain_rows = probe_rows(plain_store, "split = 'probe'");
    CHECK(plain_rows.count({4, "moe/spec_nmi"}) == 1);
    CHECK(plain_rows.count({4, "moe/l1/trace_tokens"}) == 0);
    CHECK(plain_rows.count({0, "moe/spec_nmi"}) == 0);
    // The probe is the same examples in both runs, so the end's measures agree.
    CHECK(plain_rows.at({4, "moe/spec_nmi"}) == rows.at({4, "moe/spec_nmi"}));
  }
  const std::string folder = dir.file("ckpt") + "/" +
                             traced_store.query("SELECT config_hash FROM runs").rows[0][0].text + ".trace";
  SECTION("routing_fluctuation is the share of tokens whose selected set changed, from the files") {
    for (const auto& [before, after] : std::vector<std::pair<int64_t, int64_t>>{{0, 2}, {2, 4}}) {
      const auto a = read_layer_trace(folder, before, 1).experts, b = read_layer_trace(folder, after, 1).experts;
      REQUIRE(a.size(0) == 96);
      int changed = 0;
      for (int64_t t = 0; t < 96; ++t) {
        std::set<int64_t> sa, sb;
        for (int64_t s = 0; s < a.size(1); ++s) if (a[t][s].item<int64_t>() >= 0) sa.insert(a[t][s].item<int64_t>());
        for (int64_t s = 0; s < b.size(1); ++s) if (b[t][s].item<int64_t>() >= 0) sb.insert(b[t][s].item<int64_t>());
        changed += sa != sb;
      }
      CHECK(rows.at({after, "moe/l1/routing_fluctuation"}) == Approx(changed / 96.0));
    }
  }
  SECTION("moelab trace: text, csv and the dense npy matrix agree with the files") {
    const std::string base = "trace " + traced_db + " --run 1 --layer 1";
    const auto trace = read_layer_trace(folder, 4, 1);
    CHECK(testing::as_vector(trace.labels.narrow(0, 0, 16)) == std::vector<int64_t>(16, trace.labels[0].item<int64_t>()));
    const auto csv = testing::run_moelab(base + " --format csv");
    REQUIRE(csv.exit_code == 0);
    CHECK(std::count(csv.output.begin(), csv.output.end(), '\n') == 1 + 96 * 2);  // top-2
    const auto text = testing::run_moelab(base + " --step 2");
    REQUIRE(text.exit_code == 0);
    CHECK(text.output.find("run 1 layer 1 step 2 (traced steps: 0 2 4): 96 probe tokens, 2.000 experts per token") !=
          std::string::npos);
    const auto npy = testing::run_moelab(base + " --format npy --output " + dir.file("gates.npy"));
    REQUIRE(npy.exit_code == 0);
    const auto dense = read_npy_float32(dir.file("gates.npy"));
    REQUIRE(dense.sizes() == std::vector<int64_t>{96, 4});
    CHECK(torch::allclose(dense.sum(1), trace.gates.sum(1)));
    CHECK(dense.gt(0).sum().item<int64_t>() == 96 * 2);
  }
  SECTION("plot specialisation: each label's assignments shared over the experts") {
    const auto plot = testing::run_moelab("plot " + traced_db + " --kind specialisation --data-only -o " + dir.file("plots"));
    INFO(plot.output);
    REQUIRE(plot.exit_code == 0);
    std::ifstream data(dir.file("plots/specialisation.dat"));
    std::string line;
    std::map<int64_t, double> per_label;  // label -> sum of its shares over the experts
    while (std::getline(data, line)) {
      if (line.empty() || line[0] == '#') continue;
      std::istringstream fields(line);
      int64_t expert = 0, label = 0;
      double share = 0;
      fields >> expert >> label >> share;
      per_label[label] += share;
    }
    REQUIRE_FALSE(per_label.empty());
    for (const auto& [label, total] : per_label) CHECK(total == Approx(1.0));
  }
  SECTION("asked for what was not traced: a clear error, exit 2") {
    const auto layer = testing::run_moelab("trace " + traced_db + " --run 1 --layer 0");
    CHECK(layer.exit_code == 2);
    CHECK(layer.output.find("no routing trace of layer 0") != std::string::npos);
    const auto step = testing::run_moelab("trace " + traced_db + " --run 1 --layer 1 --step 3");
    CHECK(step.exit_code == 2);
    CHECK(step.output.find("traced layer 1 at steps 0, 2, 4") != std::string::npos);
    const auto run = testing::run_moelab("trace " + plain_db + " --run 1 --layer 1");
    CHECK(run.exit_code == 2);
    const auto missing = testing::run_moelab("trace " + traced_db + " --run 7 --layer 1");
    CHECK(missing.exit_code == 2);
    CHECK(missing.output.find("--run 7: no such run") != std::string::npos);
  }
}

TEST_CASE("task.routing_replay: corrupted splits with the clean routes, and routing_flip",
          "[instruments][replay]") {
  testing::TempDir dir;
  std::ofstream(dir.file("run.yaml")) << kTracedRun;
  const std::string base = "run " + dir.file("run.yaml") + " task.corruptions=fmnist_c task.corruption_examples=40" +
                           " checkpoint_dir=" + dir.file("ckpt");
  const auto replayed = testing::run_moelab(base + " task.routing_replay=true db=" + dir.file("r.db"));
  INFO(replayed.output);
  REQUIRE(replayed.exit_code == 0);
  const auto plain = testing::run_moelab(base + " db=" + dir.file("p.db"));
  REQUIRE(plain.exit_code == 0);
  Store store(dir.file("r.db"), Store::Access::ReadOnly), plain_store(dir.file("p.db"), Store::Access::ReadOnly);
  const auto summaries = [](Store& from) {
    std::map<std::string, double> values;
    for (const auto& row : from.query("SELECT name, value FROM summaries").rows) values[row[0].text] = row[1].number();
    return values;
  };
  const auto with = summaries(store), without = summaries(plain_store);
  for (const auto& corruption : {"fog", "shot_noise", "zigzag"}) {
    const std::string split = std::string("fmnist_c:") + corruption;
    INFO(split);
    // Its own routing: the accuracy of the run without replay; the flip a share of tokens.
    CHECK(with.at(split + "/accuracy") == without.at(split + "/accuracy"));
    CHECK(with.at(split + "/moe/l1/routing_flip") >= 0.0);
    CHECK(with.at(split + "/moe/l1/routing_flip") <= 1.0);
    CHECK(with.at(split + "/moe/routing_flip") == with.at(split + "/moe/l1/routing_flip"));
    CHECK(with.count(split + "@clean_routes/accuracy") == 1);
    CHECK(without.count(split + "/moe/routing_flip") == 0);
  }
  // The suite's means: the mean error under the clean routes and the mean flip.
  const std::string flip = "/moe/routing_flip";
  double flips = 0, errors = 0;
  int flipped_splits = 0, replayed_splits = 0;
  for (const auto& [name, value] : with) {
    if (name.rfind("fmnist_c:", 0) != 0) continue;
    if (name.size() > flip.size() && name.compare(name.size() - flip.size(), flip.size(), flip) == 0) {
      flips += value;
      ++flipped_splits;
    }
    if (name.find("@clean_routes/accuracy") != std::string::npos) {
      errors += 1 - value;
      ++replayed_splits;
    }
  }
  REQUIRE(flipped_splits == 15);
  REQUIRE(replayed_splits == 15);
  CHECK(with.at("fmnist_c@clean_routes/mean_error") == Approx(errors / 15));
  CHECK(with.at("fmnist_c/mean_error") == without.at("fmnist_c/mean_error"));
  CHECK(with.at("fmnist_c/moe/routing_flip") == Approx(flips / 15));
  SECTION("robustness and plot read them") {
    const auto table = testing::run_moelab("robustness " + dir.file("r.db") + " --format csv");
    REQUIRE(table.exit_code == 0);
    CHECK(table.output.find("clean_routes_error") != std::string::npos);
    CHECK(table.output.find("routing_flip") != std::string::npos);
    const auto plot = testing::run_moelab("plot " + dir.file("r.db") + " --kind flips --data-only -o " + dir.file("plots"));
    INFO(plot.output);
    REQUIRE(plot.exit_code == 0);
    // One severity: a point per corruption, in the suite's order, each the run's layer mean.
    std::ifstream data(dir.file("plots/flips_fmnist_c.dat"));
    std::string line;
    std::vector<double> points;
    while (std::getline(data, line)) {
      if (line.empty() || line[0] == '#') continue;
      std::istringstream fields(line);
      double x = 0, mean = 0;
      fields >> x >> mean;
      CHECK(x == static_cast<double>(points.size()));
      points.push_back(mean);
    }
    REQUIRE(points.size() == 15);
    CHECK(points[10] == Approx(with.at("fmnist_c:fog/moe/routing_flip")));  // fog is the 11th
  }
  SECTION("without corruptions there is nothing to replay") {
    const auto refused = testing::run_moelab("run " + dir.file("run.yaml") + " task.routing_replay=true db=" + dir.file("x.db"));
    CHECK(refused.exit_code == 2);
    CHECK(refused.output.find("task.routing_replay = true") != std::string::npos);
  }
}

TEST_CASE("train.trace_every needs probe examples", "[instruments][config]") {
  const auto message = testing::config_error("train: {trace_every: 10}\neval: {probe_examples: 0}\n");
  CHECK(message.find("train.trace_every") != std::string::npos);
  CHECK(message.find("eval.probe_examples = 0") != std::string::npos);
}

}  // namespace moelab
