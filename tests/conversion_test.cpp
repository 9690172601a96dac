// Dense -> MoE conversion: greedy rounding and balanced k-means, balanced splits by every
// method, exactness at k = E, masked-dense form == exported MoE, gradients through the
// straight-through estimators, and the dense -> convert -> fine-tune pipeline end to end
// (one dense parent shared by its children, in single runs and in a two-worker sweep).
#include <sys/wait.h>

#include <fstream>

#include "harness/convert/conversion.h"
#include "harness/convert/masked_dense.h"
#include "harness/model/moe_layer.h"
#include "harness/convert/neuron_split.h"
#include "harness/run/runner.h"
#include "harness/store/store.h"
#include "harness/sweep/dense_parent.h"
#include "routers/dot_moe.h"
#include "convert_run.h"
#include "test_util.h"

namespace moelab {
namespace {

using testing::as_vector;

std::vector<int64_t> sizes_of(const torch::Tensor& assignment, int64_t experts) {
  return as_vector(torch::bincount(assignment, {}, experts));
}

// A dense GELU FFN D -> H -> D with random weights and biases (torch Linear layout).
struct DenseFfn {
  torch::nn::Sequential net;
  torch::Tensor w1() { return net->ptr<torch::nn::LinearImpl>(0)->weight; }
  torch::Tensor b1() { return net->ptr<torch::nn::LinearImpl>(0)->bias; }
  torch::Tensor w2() { return net->ptr<torch::nn::LinearImpl>(2)->weight; }
  torch::Tensor b2() { return net->ptr<torch::nn::LinearImpl>(2)->bias; }
};

DenseFfn dense_ffn(int64_t dim, int64_t hidden) {
  DenseFfn ffn{torch::nn::Sequential(torch::nn::Linear(dim, hidden), torch::nn::GELU(),
                                     torch::nn::Linear(hidden, dim))};
  torch::NoGradGuard no_grad;
  for (auto& p : ffn.net->parameters()) p.normal_(0.0, 0.3);
  return ffn;
}

MoELayer converted_layer(int64_t dim, int64_t experts, int64_t size, int64_t k) {
  MoeConfig moe;
  moe.experts = experts;
  moe.expert_hidden = size;
  DotMoeOptions options;
  options.k = k;
  auto router = std::make_shared<DotMoeRouter>(options, RouterShape{dim, experts, 0, 0});
  return MoELayer(dim, moe, router);
}

// The masked training form of a layer that learns its split (dot_moe).
MaskedDenseOptions learning_split() {
  MaskedDenseOptions options;
  options.learn_split = true;
  return options;
}

}  // namespace

TEST_CASE("greedy rounding on hand-made plans", "[convert]") {
  // Entries in descending order: (2,1) .95, (0,0) .9, (1,0) .8 -> expert 0 full, then
  // (3,1) .3 places the last neuron.
  auto plan = torch::tensor({0.9, 0.1, 0.8, 0.7, 0.6, 0.95, 0.2, 0.3}).view({4, 2});
  CHECK(as_vector(greedy_round(plan, 2)) == std::vector<int64_t>{0, 0, 1, 1});
  // Neuron 2 prefers expert 0, which neurons 0 and 1 filled first: capacity sends it to 1.
  auto crowded = torch::tensor({0.9, 0.8, 0.85, 0.1, 0.7, 0.2, 0.6, 0.5}).view({4, 2});
  CHECK(as_vector(greedy_round(crowded, 2)) == std::vector<int64_t>{0, 0, 1, 1});
  // Three experts of capacity 1: a permutation; ties go to the earlier entry.
  auto ties = torch::ones({3, 3});
  CHECK(as_vector(greedy_round(ties, 1)) == std::vector<int64_t>{0, 1, 2});
  CHECK_THROWS_WITH(greedy_round(torch::ones({5, 2}), 2), Catch::Matchers::Contains("do not fit"));
}

TEST_CASE("balanced k-means gives every cluster exactly N / E points", "[convert]") {
  torch::manual_seed(3);
  // Four well-separated blobs of unequal natural sizes 10, 6, 4, 4 -> 4 clusters of 6.
  std::vector<torch::Tensor> blobs;
  const std::vector<int64_t> counts = {10, 6, 4, 4};
  for (size_t c = 0; c < counts.size(); ++c) {
    blobs.push_back(torch::randn({counts[c], 3}) * 0.1 + static_cast<double>(10 * c));
  }
  auto points = torch::cat(blobs);  // [24, 3]
  auto assignment = balanced_kmeans(points, 4, 50, 7);
  CHECK(sizes_of(assignment, 4) == std::vector<int64_t>{6, 6, 6, 6});
  // Equal blobs are recovered exactly: each blob's points share one cluster.
  auto equal = torch::cat({torch::randn({5, 2}) * 0.1, torch::randn({5, 2}) * 0.1 + 20,
                           torch::randn({5, 2}) * 0.1 - 20});
  auto found = as_vector(balanced_kmeans(equal, 3, 50, 1));
  for (int blob = 0; blob < 3; ++blob) {
    for (int i = 1; i < 5; ++i) CHECK(found[blob * 5 + i] == found[blob * 5]);
  }
  CHECK(sizes_of(torch::tensor(found), 3) == std::vector<int64_t>{5, 5, 5});
}

TEST_CASE("every method's split is balanced: each neuron once, each expert exactly s",
          "[convert]") {
  torch::manual_seed(0);
  const int64_t dim = 8, hidden = 32, experts = 4;
  auto ffn = dense_ffn(dim, hidden);
  auto inputs = torch::randn({200, dim});
  for (const char* method : {"random", "weight_cluster", "activation_cluster"}) {
    INFO(method);
    auto split = heuristic_split(method, ffn.w1(), ffn.b1(), inputs, experts, 20, 5);
    CHECK(sizes_of(split, experts) == std::vector<int64_t>(experts, hidden / experts));
    auto order = expert_major_order(split);
    auto sorted = std::get<0>(torch::sort(order));
    CHECK(sorted.equal(torch::arange(hidden)));  // a permutation: every neuron exactly once
  }
  CHECK_THROWS(check_balanced(torch::tensor({0, 0, 0, 1}), 2, "uneven"));
  auto learned = learned_split(torch::randn({hidden, experts}), 0.1, 30);
  CHECK(sizes_of(learned.assignment, experts) == std::vector<int64_t>(experts, hidden / experts));
  CHECK(learned.soft.sum(1).allclose(torch::ones({hidden}), 1e-4, 1e-4));  // rows ship 1
}

TEST_CASE("with k = E the converted layer reproduces the dense FFN", "[convert]") {
  torch::manual_seed(1);
  const int64_t dim = 8, hidden = 24, experts = 4;
  auto ffn = dense_ffn(dim, hidden);
  auto x = torch::randn({50, dim});
  auto dense_out = ffn.net->forward(x);
  for (const char* method : {"random", "weight_cluster", "activation_cluster"}) {
    INFO(method);
    auto layer = converted_layer(dim, experts, hidden / experts, experts);
    auto order = expert_major_order(heuristic_split(method, ffn.w1(), ffn.b1(), x, experts, 20, 2));
    load_dense(*layer, ffn.w1(), ffn.b1(), ffn.w2(), ffn.b2(), order, experts);
    torch::NoGradGuard no_grad;
    CHECK(layer->forward(x, RouteContext{}).allclose(dense_out, 1e-5, 1e-5));
  }
}

TEST_CASE("the masked-dense training form and the exported MoE give the same outputs",
          "[convert]") {
  torch::manual_seed(2);
  const int64_t dim = 8, hidden = 32, experts = 4, k = 2;
  auto ffn = dense_ffn(dim, hidden);
  MaskedDenseOptions masked = learning_split();
  masked.anneal_steps = 10;
  auto layer = converted_layer(dim, experts, hidden / experts, k);
  auto form = install_masked_dense(*layer, masked);
  load_dense(*layer, ffn.w1(), ffn.b1(), ffn.w2(), ffn.b2(), torch::arange(hidden), k);
  {
    torch::NoGradGuard no_grad;
    for (auto& item : layer->named_parameters()) {
      if (item.key() == "form.affinity" || item.key() == "router.gate.weight") {
        item.value().normal_(0.0, 1.0);
      }
    }
  }
  auto x = torch::randn({40, dim});
  torch::NoGradGuard no_grad;
  RouteContext eval;
  RouteContext trained_tau;  // training forward after annealing uses the export temperature
  trained_tau.training = true;
  trained_tau.step = 20;
  auto masked_eval = layer->forward(x, eval);
  auto masked_train = layer->forward(x, trained_tau);
  auto split_before = form->split();
  CHECK(sizes_of(split_before, experts) == std::vector<int64_t>(experts, hidden / experts));
  export_split(*layer, *form);
  CHECK(layer->named_parameters().find("form.affinity") == nullptr);  // the form is gone
  auto exported = layer->forward(x, eval);
  CHECK(exported.allclose(masked_eval, 1e-5, 1e-5));
  CHECK(exported.allclose(masked_train, 1e-5, 1e-5));
  // The exported experts hold exactly the neurons the learned split gave them.
  auto order = expert_major_order(split_before);
  auto w_in_flat = ffn.w1().t().index_select(1, order).view({dim, experts, hidden / experts});
  CHECK(layer->named_parameters()["w_in"].allclose(w_in_flat.permute({1, 0, 2})));
}

TEST_CASE("a seeded learned split starts at the heuristic split", "[convert]") {
  torch::manual_seed(5);
  const int64_t dim = 8, hidden = 32, experts = 4;
  auto ffn = dense_ffn(dim, hidden);
  MaskedDenseOptions masked = learning_split();
  auto layer = converted_layer(dim, experts, hidden / experts, 2);
  auto form = install_masked_dense(*layer, masked);
  auto split = heuristic_split("weight_cluster", ffn.w1(), ffn.b1(), torch::Tensor(), experts, 20, 1);
  CHECK_FALSE(form->split().equal(split));  // N(0, 0.01^2) affinities: some other split
  form->seed_affinity(split, masked.tau_end);
  CHECK(form->split().equal(split));
}

TEST_CASE("gradients reach the affinities and the router through the estimators",
          "[convert]") {
  torch::manual_seed(4);
  const int64_t dim = 8, hidden = 16, experts = 4, k = 1;
  auto ffn = dense_ffn(dim, hidden);
  auto layer = converted_layer(dim, experts, hidden / experts, k);
  auto form = install_masked_dense(*layer, learning_split());
  load_dense(*layer, ffn.w1(), ffn.b1(), ffn.w2(), ffn.b2(), torch::arange(hidden), k);
  auto x = torch::randn({30, dim});
  RouteContext ctx;
  ctx.training = true;
  ctx.step = 1;
  layer->forward(x, ctx).pow(2).sum().backward();
  auto params = layer->named_parameters();
  auto affinity_grad = params["form.affinity"].grad();
  auto router_grad = params["router.gate.weight"].grad();
  REQUIRE(affinity_grad.defined());
  REQUIRE(router_grad.defined());
  CHECK(affinity_grad.abs().sum().item<double>() > 0);
  CHECK(router_grad.abs().sum().item<double>() > 0);
  // Exported, the sparse MoE still trains its router: unit weights carry dP.
  export_split(*layer, *form);
  for (auto& p : layer->parameters()) p.mutable_grad() = torch::Tensor();
  layer->forward(x, ctx).pow(2).sum().backward();
  CHECK(layer->named_parameters()["router.gate.weight"].grad().abs().sum().item<double>() > 0);
}

TEST_CASE("the unrolled transport plan has the finite-difference gradient", "[convert]") {
  torch::manual_seed(6);
  auto affinity = torch::randn({6, 3}, torch::dtype(torch::kDouble)).requires_grad_(true);
  auto weights = torch::randn({6, 3}, torch::dtype(torch::kFloat));
  auto objective = [&](const torch::Tensor& a) {
    return (learned_split(a, 0.5, 300, /*unrolled=*/true).soft * weights).sum();
  };
  objective(affinity).backward();
  auto unrolled = affinity.grad().clone();
  const double eps = 1e-2;
  for (int64_t i : {0, 7, 13}) {
    torch::NoGradGuard no_grad;
    auto up = affinity.detach().clone(), down = affinity.detach().clone();
    up.view({-1})[i] += eps;
    down.view({-1})[i] -= eps;
    const double numeric = (objective(up) - objective(down)).item<double>() / (2 * eps);
    INFO("entry " << i);
    CHECK(unrolled.view({-1})[i].item<double>() == Approx(numeric).margin(2e-3).epsilon(0.02));
  }
  // Holding the duals fixed gives a different (approximate) gradient.
  auto fixed = affinity.detach().clone().requires_grad_(true);
  (learned_split(fixed, 0.5, 300).soft * weights).sum().backward();
  CHECK_FALSE(fixed.grad().allclose(unrolled, 1e-3, 1e-3));
}

TEST_CASE("convert config errors name the rule", "[convert][config]") {
  const std::string base =
      "model: {ffn_hidden: 64, moe: {experts: 4, expert_hidden: 16}}\n"
      "router: {name: dot_moe}\nconvert: {method: random}\n";
  CHECK_NOTHROW(parse_run_config(base, "t.yaml"));
  CHECK_THAT(testing::config_error(base, {"router.name=topk"}),
             Catch::Matchers::Contains("dot_moe"));
  CHECK_THAT(testing::config_error(base, {"model.moe.expert_hidden=8"}),
             Catch::Matchers::Contains("model.ffn_hidden = 64"));
  CHECK_THAT(testing::config_error(base, {"convert.parent=xyz"}),
             Catch::Matchers::Contains("convert.parent"));
  CHECK_THAT(testing::config_error(base, {"convert.method=kmeans"}),
             Catch::Matchers::Contains("activation_cluster"));
  // Configs that do not convert keep their identity (the section is left out of the hash).
  RunConfig plain = parse_run_config("", "t.yaml");
  RunConfig explicit_none = parse_run_config("convert: {method: none}\n", "t.yaml");
  CHECK(config_hash(plain) == config_hash(explicit_none));
  CHECK(config_hash(plain) != config_hash(parse_run_config(base, "t.yaml")));
  // Fields added later leave the identity alone at their defaults and change it otherwise.
  const RunConfig converting = parse_run_config(base, "t.yaml");
  CHECK(config_hash(converting) ==
        config_hash(parse_run_config(base, "t.yaml", {"convert.split_grad=fixed_duals",
                                                      "convert.affinity_lr_scale=1"})));
  CHECK(config_hash(converting) !=
        config_hash(parse_run_config(base, "t.yaml", {"convert.split_grad=unrolled"})));
  CHECK(config_hash(converting) !=
        config_hash(parse_run_config(base, "t.yaml", {"convert.affinity_lr_scale=10"})));
}

namespace {

int shell(const std::string& command) {
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_CASE("dense -> convert -> fine-tune: children share one dense parent and link to it",
          "[convert][smoke]") {
  testing::TempDir dir;
  const std::vector<std::string> where = {"db=" + dir.file("c.db"),
                                          "checkpoint_dir=" + dir.file("ckpt")};
  for (const char* method : {"random", "dot_moe"}) {
    auto overrides = where;
    overrides.push_back(std::string("convert.method=") + method);
    RunOutcome outcome = run_alone(parse_run_config(testing::kConvertRun, "conv.yaml", overrides));
    INFO(outcome.error);
    REQUIRE(outcome.status == RunStatus::Done);
    std::map<std::string, double> summary(outcome.summaries.begin(), outcome.summaries.end());
    CHECK(summary.count("retention/test/accuracy") == 1);
    CHECK(summary.count("convert/recon_err_oracle") == 1);
    CHECK(summary.count("export/recon_err") == 1);
    CHECK(summary.at("export/ffn_active_fraction") == Approx(0.5));
    CHECK(summary.at("export/active_param_fraction") < 1.0);
    CHECK(summary.at("export/active_param_fraction") > 0.5);
  }
  Store store(dir.file("c.db"));
  // The parent (run 1) was trained before the first child (run 2); the second child reused it.
  auto runs = store.query("SELECT id, status, parent_run_id, name FROM runs ORDER BY id");
  REQUIRE(runs.rows.size() == 3);
  CHECK(runs.rows[0][3].text == "conv-dense");
  CHECK(runs.rows[0][1].text == "done");
  CHECK(runs.rows[0][2].type == Cell::Type::Null);
  CHECK(runs.rows[1][2].integer == 1);
  CHECK(runs.rows[2][2].integer == 1);
  auto convert_rows = store.query("SELECT COUNT(*) FROM metrics WHERE run_id = 3 AND "
                                  "split = 'convert' AND step = 0");
  CHECK(convert_rows.rows[0][0].integer >= 4);  // per layer + mean + seconds
  auto kl = store.query("SELECT COUNT(*) FROM metrics WHERE run_id = 3 AND name = 'kl'");
  CHECK(kl.rows[0][0].integer >= 1);
  // An explicit parent by run id works too; a child is no parent, an unknown id is an error
  // raised before the run gets a row.
  auto overrides = where;
  overrides.push_back("convert.method=weight_cluster");
  overrides.push_back("convert.parent=1");
  CHECK(run_alone(parse_run_config(testing::kConvertRun, "conv.yaml", overrides)).status == RunStatus::Done);
  overrides.back() = "convert.parent=99";
  CHECK_THROWS_WITH(run_alone(parse_run_config(testing::kConvertRun, "conv.yaml", overrides)),
                    Catch::Matchers::Contains("convert.parent = \"99\""));
  overrides.back() = "convert.parent=2";
  CHECK_THROWS_WITH(run_alone(parse_run_config(testing::kConvertRun, "conv.yaml", overrides)),
                    Catch::Matchers::Contains("not a dense model"));
  CHECK(store.query("SELECT COUNT(*) FROM runs").rows[0][0].integer == 4);
}

TEST_CASE("a conversion sweep with two workers trains each dense parent once", "[convert][sweep][smoke][.slow]") {
  testing::TempDir dir;
  std::ofstream(dir.file("base.yaml")) << testing::kConvertRun << "db: " << dir.file("s.db") << "\n"
                                       << "checkpoint_dir: " << dir.file("ckpt") << "\n";
  std::ofstream(dir.file("sweep.yaml"))
      << "extends: base.yaml\nname: conv\ngrid:\n  convert.method: [random, weight_cluster, "
         "activation_cluster, dot_moe]\n";
  REQUIRE(shell("cd " + dir.file("") + " && " + MOELAB_BINARY + " sweep sweep.yaml --workers 2 > " +
                dir.file("out.txt") + " 2>&1") == 0);
  Store store(dir.file("s.db"));
  auto counts = store.query("SELECT SUM(parent_run_id IS NULL), SUM(parent_run_id IS NOT NULL), "
                            "SUM(status = 'done'), COUNT(DISTINCT parent_run_id) FROM runs "
                            "WHERE sweep = 'conv'");
  CHECK(counts.rows[0][0].integer == 1);  // one dense parent
  CHECK(counts.rows[0][1].integer == 4);  // four converted children
  CHECK(counts.rows[0][2].integer == 5);
  CHECK(counts.rows[0][3].integer == 1);
}

TEST_CASE("the char LM converts too, and its exported MoE takes a routing swap",
          "[convert][lm][smoke][.slow]") {
  testing::TempDir dir;
  const std::string yaml = std::string(R"(name: lmconv
task: {name: lm, seq_len: 32, data_path: )" MOELAB_SOURCE_DIR R"(/.data/gutenberg}
model: {dim: 16, depth: 2, heads: 2, ffn_hidden: 32, moe: {experts: 4, expert_hidden: 8}}
router: {name: dot_moe, k: 1}
train: {steps: 4, batch_size: 8, log_every: 2, warmup_steps: 1}
eval: {max_examples: 64, router_override: {name: expert_choice, k: 1}}
convert: {method: activation_cluster, dense_steps: 4, calibration_tokens: 256}
)") + "db: " + dir.file("l.db") + "\ncheckpoint_dir: " + dir.file("ckpt") + "\n";
  RunOutcome outcome = run_alone(parse_run_config(yaml, "lm.yaml"));
  INFO(outcome.error);
  REQUIRE(outcome.status == RunStatus::Done);
  std::map<std::string, double> summary(outcome.summaries.begin(), outcome.summaries.end());
  CHECK(summary.count("retention/test/bpc") == 1);
  CHECK(summary.at("export/ffn_active_fraction") == Approx(0.25));
  // The exported MoE is routing-swapped like any other model.
  CHECK(summary.count("test@expert_choice/bpc") == 1);
}

}  // namespace moelab
