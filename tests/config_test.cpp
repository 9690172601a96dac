// Typed config: parsing, every kind of error with its message, overrides, canonical dump
// and hash stability.
#include "harness/config/config.h"

#include "harness/core/sha256.h"
#include "routers/topk.h"
#include "test_util.h"

using moelab::testing::config_error;
using Catch::Matchers::Contains;

namespace moelab {

TEST_CASE("sha256 matches the FIPS 180-4 test vectors", "[config]") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(sha256_hex(std::string(1000000, 'a')) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("a valid config is parsed into typed fields", "[config]") {
  RunConfig config = parse_run_config(R"(
name: demo
seed: 7
model:
  dim: 32
  heads: 2
  moe: {experts: 4, expert_hidden: 64, layers: "0,2", capacity_factor: 1.25, drop_policy: position}
router: {name: topk, k: 1, softmax: before, aux_coef: 0.01}
train: {steps: 10, lr: 3e-4}
)",
                                      "demo.yaml");
  CHECK(config.name == "demo");
  CHECK(config.seed == 7);
  CHECK(config.model.dim == 32);
  CHECK(config.model.moe.experts == 4);
  CHECK(config.model.moe.capacity_factor == 1.25);
  CHECK(config.model.moe.drop_policy == "position");
  CHECK(moe_layer_indices(config.model) == std::vector<int64_t>{0, 2});
  CHECK(config.train.lr == 3e-4);
  CHECK(config.train.batch_size == TrainConfig{}.batch_size);  // default kept
  const auto& topk = options_as<TopKOptions>(*config.router.options);
  CHECK(topk.k == 1);
  CHECK(topk.softmax == "before");
  CHECK(topk.aux_coef == 0.01);
}

TEST_CASE("YAML syntax errors give file, line and column", "[config]") {
  const std::string message = config_error("train:\n  steps: [1, 2\nmodel: {}\n");
  CHECK_THAT(message, Contains("test.yaml:"));
  CHECK_THAT(message, Contains("YAML syntax error"));
}

TEST_CASE("what yaml-cpp accepts silently is refused: a duplicated key, an unclosed quote",
          "[config]") {
  // yaml-cpp keeps the first of two equal keys and runs an unclosed quote to the end.
  const std::string twice = config_error("train:\n  lr: 0.001\nseed: 2\ntrain:\n  steps: 3\n");
  CHECK_THAT(twice, Contains("test.yaml:4:1") && Contains("duplicate key 'train'") &&
                        Contains("first at line 1"));
  CHECK_THAT(config_error("train: {steps: 3, steps: 4}\n"), Contains("duplicate key 'steps'"));
  CHECK_THAT(config_error("name: \"tiny\nseed: 3\n"),
             Contains("test.yaml:1:7") && Contains("never closed"));
  CHECK_THAT(config_error("name: 'it''s\nseed: 3\n"), Contains("never closed"));
  // Closed quotes, escapes and doubled single quotes are fine.
  CHECK(parse_run_config("name: \"a \\\" b\"\nseed: 3\n", "ok.yaml").name == "a \" b");
  CHECK(parse_run_config("name: 'it''s'\n", "ok.yaml").name == "it's");
}

TEST_CASE("unknown keys are rejected with their path and the nearest valid key", "[config]") {
  SECTION("top level") {
    const std::string message = config_error("seed: 1\ntrian:\n  steps: 3\n");
    CHECK_THAT(message, Contains("test.yaml:2:1"));
    CHECK_THAT(message, Contains("unknown key 'trian'"));
    CHECK_THAT(message, Contains("did you mean 'train'?"));
  }
  SECTION("nested") {
    const std::string message = config_error("train:\n  step: 3\n");
    CHECK_THAT(message, Contains("test.yaml:2:3"));
    CHECK_THAT(message, Contains("unknown key 'train.step'"));
    CHECK_THAT(message, Contains("did you mean 'steps'?"));
  }
  SECTION("plugin options are typed per plugin") {
    const std::string message = config_error("router: {name: topk, kk: 2}\n");
    CHECK_THAT(message, Contains("unknown key 'router.kk'"));
    CHECK_THAT(message, Contains("did you mean 'k'?"));
  }
}

TEST_CASE("unknown plugin names list the known ones", "[config]") {
  const std::string message = config_error("router: {name: topkk}\n");
  CHECK_THAT(message, Contains("test.yaml:1:16"));
  CHECK_THAT(message, Contains("unknown router 'topkk'"));
  CHECK_THAT(message, Contains("did you mean 'topk'?"));
  CHECK_THAT(message, Contains("known routers: topk"));
}

TEST_CASE("wrong types and out-of-range values name key, value and rule", "[config]") {
  CHECK_THAT(config_error("train: {steps: many}\n"),
             Contains("train.steps = 'many': expected int"));
  CHECK_THAT(config_error("train: {lr: -0.001}\n"), Contains("train.lr = -0.001: must be > 0"));
  CHECK_THAT(config_error("train: {batch_size: 0}\n"),
             Contains("train.batch_size = 0: must be >= 1"));
  CHECK_THAT(config_error("model: {moe: {experts: 4}}\nrouter: {name: topk, k: 5}\n"),
             Contains("router.k = 5: must be <= model.moe.experts = 4"));
  CHECK_THAT(config_error("model: {moe: {drop_policy: prob}}\n"),
             Contains("did you mean 'probs'?"));
  CHECK_THAT(config_error("model: {dim: 30, heads: 4}\n"), Contains("must divide model.dim"));
  CHECK_THAT(config_error("model: {depth: 2, moe: {layers: \"0,5\"}}\n"),
             Contains("model.moe.layers"));
  CHECK_THAT(config_error("train: 5\n"), Contains("'train' must be a map"));
}

TEST_CASE("key=value overrides set dotted paths and are validated", "[config]") {
  RunConfig config = parse_run_config("train: {steps: 10}\n", "base.yaml",
                                      {"train.steps=20", "router.k=1", "model.moe.layers=none"});
  CHECK(config.train.steps == 20);
  CHECK(options_as<TopKOptions>(*config.router.options).k == 1);
  CHECK(moe_layer_indices(config.model).empty());

  CHECK_THAT(config_error("", {"train.lr=-1"}), Contains("override 'train.lr=-1'"));
  CHECK_THAT(config_error("", {"train.setps=3"}), Contains("did you mean 'steps'?"));
  CHECK_THAT(config_error("", {"novalue"}), Contains("expected key=value"));
  CHECK_THAT(config_error("seed: 1\n", {"seed.x=1"}), Contains("'seed' is a value, not a section"));
  CHECK_THAT(config_error("", {"seed.x=1"}), Contains("override 'seed.x=1'"));
}

TEST_CASE("the canonical dump round-trips and the hash is stable", "[config]") {
  RunConfig config = parse_run_config("seed: 3\ntrain: {lr: 0.0003}\nrouter: {name: topk, k: 1}\n",
                                      "a.yaml");
  const std::string dump = canonical_yaml(config);
  RunConfig again = parse_run_config(dump, "dump.yaml");
  CHECK(canonical_yaml(again) == dump);
  CHECK(config_hash(again) == config_hash(config));
  CHECK_THAT(dump, Contains("lr: 0.0003"));

  SECTION("key order and formatting in the file do not change the identity") {
    RunConfig reordered = parse_run_config(
        "router:\n  k: 1\n  name: topk\ntrain:\n  lr: 3.0e-4\nseed: 3\n", "b.yaml");
    CHECK(config_hash(reordered) == config_hash(config));
  }
  SECTION("unhashed fields (name, db, threads) do not change the identity") {
    RunConfig relabelled = parse_run_config(dump, "c.yaml", {"name=other", "threads=1",
                                                             "db=/tmp/x.db"});
    CHECK(config_hash(relabelled) == config_hash(config));
  }
  SECTION("any hashed field changes the identity") {
    CHECK(config_hash(parse_run_config(dump, "d.yaml", {"seed=4"})) != config_hash(config));
    CHECK(config_hash(parse_run_config(dump, "d.yaml", {"router.k=2"})) != config_hash(config));
  }
  SECTION("the hash of the default config is pinned") {
    // Changing a default or a field name changes every run identity: do it deliberately.
    // (Last changed: image task.corruptions / task.corruption_examples added.)
    RunConfig defaults;
    CHECK(config_hash(defaults) == "df84ad6b1f7c22b89ddb1ae788841d38d32b3eacbd461827bfa310f41b2d7b35");
  }
}

TEST_CASE("a run's identity is its meaning: every spelling of one value has one hash",
          "[config][canonical]") {
  const auto hash_of = [](std::vector<std::string> overrides) {
    return config_hash(parse_run_config("", "t.yaml", overrides));
  };
  const auto dumped = [](const std::string& assignment, const std::string& key) {
    RunConfig config = parse_run_config("", "t.yaml", {assignment});
    const auto rows = list_fields(config);
    for (const auto& row : rows) {
      if (row.path == key) return row.value;
    }
    return std::string("(no field)");
  };
  SECTION("model.moe.layers: spaces, order, and the keyword of the set at this depth") {
    const std::string list = hash_of({"model.moe.layers=1,3"});
    CHECK(hash_of({"model.moe.layers=1, 3"}) == list);
    CHECK(hash_of({"model.moe.layers=3,1"}) == list);
    CHECK(hash_of({"model.moe.layers= 3 ,1 "}) == list);
    CHECK(dumped("model.moe.layers=3, 1", "model.moe.layers") == "every_other");  // depth 4
    CHECK(hash_of({"model.moe.layers=every_other"}) == list);
    CHECK(hash_of({"model.moe.layers=0,1,2,3"}) == hash_of({"model.moe.layers=all"}));
    CHECK(hash_of({"model.moe.layers=3,2,1,0"}) == hash_of({}));  // "all" is the default
    CHECK(dumped("model.moe.layers=2,0", "model.moe.layers") == "0,2");
    // The same text at another depth is another set.
    CHECK(hash_of({"model.depth=6", "model.moe.layers=0,1,2,3"}) !=
          hash_of({"model.depth=6", "model.moe.layers=all"}));
    CHECK(dumped("model.moe.layers=0", "model.moe.layers") == "0");
    // Different sets stay different.
    CHECK(hash_of({"model.moe.layers=0,2"}) != list);
  }
  SECTION("model.moe.null_experts: order, grouping and implicit counts") {
    const std::string mixed = hash_of({"model.moe.null_experts=zero:1,copy:1,constant:2"});
    CHECK(hash_of({"model.moe.null_experts=constant:2,copy,zero"}) == mixed);
    CHECK(hash_of({"model.moe.null_experts=constant:1, zero:1, constant:1, copy:1"}) == mixed);
    CHECK(dumped("model.moe.null_experts=copy,zero,copy", "model.moe.null_experts") ==
          "zero:1,copy:2");
    CHECK(hash_of({"model.moe.null_experts=zero:2"}) != hash_of({"model.moe.null_experts=zero:1"}));
    CHECK(hash_of({"model.moe.null_experts="}) == hash_of({}));
  }
  SECTION("task.attacks: fractions and decimals of one value, defaults written or not, order") {
    const std::string fraction = hash_of({"task.attacks=fgsm:eps=8/255"});
    CHECK(hash_of({fmt::format("task.attacks=fgsm:eps={}", 8.0 / 255.0)}) == fraction);
    CHECK(hash_of({"task.attacks=fgsm:eps=16/510"}) == fraction);
    CHECK(hash_of({"task.attacks=fgsm:eps=0.0314"}) != fraction);  // another radius
    const std::string pgd = hash_of({"task.attacks=pgd:eps=8/255"});
    CHECK(hash_of({"task.attacks=pgd:eps=8/255:steps=10:restarts=1:start=random"}) == pgd);
    CHECK(hash_of({"task.attacks=pgd:eps=8/255:start=zero"}) != pgd);
    CHECK(dumped("task.attacks=pgd:eps=5/255,fgsm:eps=0.5", "task.attacks") ==
          "fgsm:eps=0.5,pgd:eps=5/255:steps=10");
    CHECK(hash_of({"task.attacks=pgd:eps=2/255,fgsm:eps=2/255"}) ==
          hash_of({"task.attacks=fgsm:eps=2/255,pgd:eps=2/255:steps=10"}));
    CHECK_THAT(config_error("", {"task.attacks=fgsm:eps=8/255,fgsm:eps=16/510"}),
               Contains("task.attacks") && Contains("listed twice"));
  }
  SECTION("task.corruptions: the suites in their declared order") {
    CHECK(hash_of({"task.corruptions=cifar_c, fmnist_c"}) ==
          hash_of({"task.corruptions=fmnist_c,cifar_c"}));
    CHECK(dumped("task.corruptions=cifar_c,fmnist_c", "task.corruptions") == "fmnist_c,cifar_c");
    CHECK_THAT(config_error("", {"task.corruptions=fmnist_c,fmnist_c"}),
               Contains("task.corruptions") && Contains("listed twice"));
    CHECK_THAT(config_error("", {"task.corruptions=fmnist-c"}),
               Contains("task.corruptions") && Contains("unknown suite 'fmnist-c'"));
  }
  SECTION("lm task.corruptions: order and the spelling of a rate") {
    const auto lm = [&](const std::string& corruptions) {
      return hash_of({"task.name=lm", "task.corruptions=" + corruptions});
    };
    CHECK(lm("qwerty:0.1,aaa:0.015") == lm("aaa:0.015,qwerty:0.1"));
    CHECK(lm("aaa:1.5e-2, qwerty:.1") == lm("aaa:0.015,qwerty:0.1"));
    CHECK(lm("aaa:0.015") != lm("aaa:0.025"));
  }
  SECTION("train.budget: the spelling of an amount, and a budget in steps is train.steps") {
    const std::string flops = hash_of({"train.budget=2.5e12 flops"});
    CHECK(hash_of({"train.budget=2500e9  flops"}) == flops);
    CHECK(hash_of({"train.budget= 2500000000000 flops "}) == flops);
    CHECK(hash_of({"train.budget=2.5e12 tokens"}) != flops);
    CHECK(hash_of({"train.budget=none"}) == hash_of({}));
    CHECK(hash_of({"train.steps=1000", "train.budget=300 steps"}) == hash_of({"train.steps=300"}));
    CHECK(dumped("train.budget=300 steps", "train.steps") == "300");
    CHECK(dumped("train.budget=300 steps", "train.budget") == "none");
  }
}

TEST_CASE("bad values in the small languages are errors naming the key, line and column",
          "[config][canonical]") {
  CHECK_THAT(config_error("model:\n  moe:\n    layers: \"1,1\"\n"),
             Contains("test.yaml:3:13") && Contains("model.moe.layers") &&
                 Contains("block 1 is listed twice"));
  CHECK_THAT(config_error("model:\n  moe: {layers: \"0,x\"}\n"),
             Contains("test.yaml:2:17") && Contains("model.moe.layers") && Contains("'x'"));
  CHECK_THAT(config_error("model:\n  moe: {layers: \"0,4\"}\n"),
             Contains("test.yaml:2:17") && Contains("block 4 is not below model.depth = 4"));
  CHECK_THAT(config_error("model:\n  moe: {layers: \"\"}\n"), Contains("write none"));
  CHECK_THAT(config_error("model:\n  moe: {null_experts: \"zero:40,zero:40\"}\n"),
             Contains("model.moe.null_experts") && Contains("at most 64"));
  CHECK_THAT(config_error("train:\n  budget: 1e12 flop\n"),
             Contains("test.yaml:2:11") && Contains("train.budget") && Contains("unknown budget unit 'flop'"));
  CHECK_THAT(config_error("train: {budget: -3 tokens}\n"),
             Contains("train.budget") && Contains("'-3' is not a positive number"));
  CHECK_THAT(config_error("", {"train.budget=12.5 steps"}), Contains("whole number"));
  CHECK_THAT(config_error("", {"train.budget=1e12"}), Contains("none or '<amount> steps|tokens|flops'"));
  CHECK_THAT(config_error("", {"train.steps=100", "train.budget=200 steps"}),
             Contains("train.budget") && Contains("more steps than train.steps = 100"));
}

TEST_CASE("cross-field errors carry their key and are located by it", "[config]") {
  CHECK_THAT(config_error("seed: 1\nmodel: {dim: 30, heads: 4}\n"),
             Contains("test.yaml:2:") && Contains("model.heads = 4: must divide model.dim = 30"));
  // A router's own rule, checked for the routing swap, names the swap's key and line.
  CHECK_THAT(config_error("seed: 1\neval:\n  router_override: {name: topk, k: 9}\n"),
             Contains("test.yaml:3:") && Contains("eval.router_override.k = 9: must be <="));
  CHECK_THAT(config_error("", {"router.k=9"}), Contains("override 'router.k=9'") &&
                                                   Contains("router.k = 9"));
  const ConfigError keyed = ConfigError::at_key("router.k", "9: too many");
  CHECK(keyed.key() == "router.k");
  CHECK(std::string(keyed.what()) == "router.k = 9: too many");
  CHECK(keyed.rekeyed("router.", "eval.router_override.").key() == "eval.router_override.k");
  CHECK(std::string(ConfigError("a message").what()) == "a message");
  CHECK(ConfigError("a message").key().empty());
}

TEST_CASE("a broken invariant is an InternalError, not bad input", "[config]") {
  const auto broken = [] { MOELAB_CHECK(1 + 1 == 3, "arithmetic {}", "fails"); };
  CHECK_THROWS_AS(broken(), InternalError);
  CHECK_THROWS_WITH(broken(), Contains("internal error: arithmetic fails"));
  bool config_error_thrown = false;
  try {
    broken();
  } catch (const ConfigError&) {
    config_error_thrown = true;
  } catch (const Error&) {
  }
  CHECK_FALSE(config_error_thrown);
}

}  // namespace moelab
