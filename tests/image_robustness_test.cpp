// The image task's robustness inputs: CIFAR-10/100 binary files and the released corruption
// files written here in exactly their official layouts, the seeded crop-and-flip
// augmentation, and FGSM / PGD checked against hand-computed gradient steps and on a trained
// model.
#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "harness/core/npy.h"
#include "harness/run/runner.h"
#include "tasks/image/attacks.h"
#include "tasks/image/corruption_files.h"
#include "tasks/image/corruptions.h"
#include "tasks/image/image_data.h"
#include "test_util.h"

namespace moelab {
namespace {

// The pixel every test file stores for (image, channel, row, column).
uint8_t pixel(int64_t image, int64_t channel, int64_t row, int64_t col) {
  return static_cast<uint8_t>((image * 7 + channel * 31 + row * 3 + col) % 256);
}

// A CIFAR binary file: per record the label byte(s), then the red, green and blue planes
// of 32 x 32 pixels, row-major.
void write_cifar(const std::string& path, const std::vector<std::vector<uint8_t>>& labels,
                 int64_t first_image = 0) {
  std::ofstream out(path, std::ios::binary);
  for (size_t i = 0; i < labels.size(); ++i) {
    for (uint8_t label : labels[i]) out.put(static_cast<char>(label));
    for (int64_t c = 0; c < 3; ++c) {
      for (int64_t r = 0; r < 32; ++r) {
        for (int64_t col = 0; col < 32; ++col) {
          out.put(static_cast<char>(pixel(first_image + static_cast<int64_t>(i), c, r, col)));
        }
      }
    }
  }
}

// CIFAR-10 in `dir`: five training batches of `per_batch` images and a test batch of 10,
// labels image % 10.
void write_cifar10(const std::string& dir, int64_t per_batch) {
  for (int64_t batch = 0; batch < 5; ++batch) {
    std::vector<std::vector<uint8_t>> labels;
    for (int64_t i = 0; i < per_batch; ++i) {
      labels.push_back({static_cast<uint8_t>((batch * per_batch + i) % 10)});
    }
    write_cifar(fmt::format("{}/data_batch_{}.bin", dir, batch + 1), labels, batch * per_batch);
  }
  std::vector<std::vector<uint8_t>> test;
  for (int64_t i = 0; i < 10; ++i) test.push_back({static_cast<uint8_t>(i)});
  write_cifar(dir + "/test_batch.bin", test);
}

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const ConfigError& e) {
    return e.what();
  }
  FAIL("expected a ConfigError");
  return "";
}

void check_error(const std::string& message, const std::vector<std::string>& parts) {
  INFO(message);
  for (const auto& part : parts) CHECK_THAT(message, Catch::Matchers::Contains(part));
}

// A CIFAR-10-C folder: the 15 corruptions, each [5 M, 32, 32, 3] with severity s stored as the
// pattern plus 10 s (mod 256), and labels.npy; or MNIST-C folders with [M, 28, 28, 1].
void write_cifar10_c(const std::string& dir, int64_t m) {
  std::filesystem::create_directories(dir);
  auto images = torch::empty({5 * m, 32, 32, 3}, torch::kUInt8);
  auto a = images.accessor<uint8_t, 4>();
  for (int64_t s = 0; s < 5; ++s) {
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t r = 0; r < 32; ++r) {
        for (int64_t col = 0; col < 32; ++col) {
          for (int64_t c = 0; c < 3; ++c) {
            a[s * m + i][r][col][c] = static_cast<uint8_t>(pixel(i, c, r, col) + 10 * (s + 1));
          }
        }
      }
    }
  }
  for (const auto& corruption : suite_corruptions("cifar_c")) {
    write_npy(fmt::format("{}/{}.npy", dir, corruption.name), images);
  }
  write_npy(dir + "/labels.npy", (torch::arange(5 * m) % 10).to(torch::kUInt8));
}

}  // namespace

TEST_CASE("CIFAR-10 and CIFAR-100 binary files are read in their official layout", "[data][cifar]") {
  testing::TempDir dir;
  write_cifar10(dir.path(), 4);
  const LoadedDataset cifar10 = load_dataset({"cifar10", dir.path(), false});
  REQUIRE(cifar10.train.images.sizes() == torch::IntArrayRef({20, 3, 32, 32}));
  REQUIRE(cifar10.test.images.sizes() == torch::IntArrayRef({10, 3, 32, 32}));
  CHECK(cifar10.files.size() == 6);
  for (int64_t i : {0, 5, 19}) {  // across the batch files, in order
    CHECK(cifar10.train.labels[i].item<int64_t>() == i % 10);
    for (int64_t c = 0; c < 3; ++c) {
      for (auto [r, col] : {std::pair<int64_t, int64_t>{0, 0}, {5, 17}, {31, 31}}) {
        CHECK(cifar10.train.images[i][c][r][col].item<int64_t>() == pixel(i, c, r, col));
      }
    }
  }

  // CIFAR-100: coarse label first, then fine.
  write_cifar(dir.file("train.bin"), {{3, 77}, {19, 99}, {0, 5}});
  write_cifar(dir.file("test.bin"), {{7, 42}});
  const LoadedDataset fine = load_dataset({"cifar100", dir.path(), false});
  CHECK(testing::as_vector(fine.train.labels) == std::vector<int64_t>{77, 99, 5});
  CHECK(testing::as_vector(fine.test.labels) == std::vector<int64_t>{42});
  const LoadedDataset coarse = load_dataset({"cifar100", dir.path(), true});
  CHECK(testing::as_vector(coarse.train.labels) == std::vector<int64_t>{3, 19, 0});
  CHECK(coarse.train.images[2][1][4][9].item<int64_t>() == pixel(2, 1, 4, 9));
  CHECK(dataset_classes({"cifar100", dir.path(), true}) == 20);
  CHECK(dataset_classes({"cifar100", dir.path(), false}) == 100);
}

TEST_CASE("broken or missing CIFAR files are errors naming the file", "[data][cifar]") {
  testing::TempDir dir;
  write_cifar10(dir.path(), 2);
  std::filesystem::resize_file(dir.file("data_batch_3.bin"), 2 * 3073 - 1);
  check_error(error_of([&] { load_dataset({"cifar10", dir.path(), false}); }),
              {"data_batch_3.bin", "6145 bytes", "3073-byte"});
  write_cifar10(dir.path(), 2);
  write_cifar(dir.file("test_batch.bin"), {{1}, {10}});
  check_error(error_of([&] { load_dataset({"cifar10", dir.path(), false}); }),
              {"test_batch.bin", "label 10", "0..9"});
  std::filesystem::remove(dir.file("test_batch.bin"));
  check_error(error_of([&] { check_dataset_files({"cifar10", dir.path(), false}); }),
              {"test_batch.bin", "docs/data.md"});
  check_error(error_of([&] { dataset_dir({"cifar10", "", false}); }),
              {"task.data_dir", "data_batch_1.bin"});
  write_cifar(dir.file("train.bin"), {{20, 1}});
  write_cifar(dir.file("test.bin"), {{0, 1}});
  check_error(error_of([&] { load_dataset({"cifar100", dir.path(), true}); }),
              {"train.bin", "label 20", "0..19"});
  check_error(error_of([&] { check_dataset_files({"cifar10", dir.path(), true}); }),
              {"task.labels = coarse", "cifar100"});
}

TEST_CASE("crop_flip crops the zero-padded image and flips it, seeded by (seed, step)",
          "[data][augment]") {
  torch::manual_seed(3);
  const auto images = torch::randint(1, 256, {64, 3, 8, 8}).to(torch::kUInt8);
  const int64_t padding = 2;
  const auto padded = torch::constant_pad_nd(images, {padding, padding, padding, padding}, 0);
  const auto out = crop_flip(images, padding, 7, 11);
  std::set<int64_t> offsets;
  int flips = 0;
  for (int64_t b = 0; b < 64; ++b) {
    bool found = false;
    for (int64_t top = 0; top <= 2 * padding && !found; ++top) {
      for (int64_t left = 0; left <= 2 * padding && !found; ++left) {
        const auto crop = padded[b].narrow(1, top, 8).narrow(2, left, 8);
        for (bool flip : {false, true}) {
          if (torch::equal(out[b], flip ? crop.flip({2}) : crop)) {
            found = true;
            flips += flip ? 1 : 0;
            offsets.insert(top * 10 + left);
            break;
          }
        }
      }
    }
    CHECK(found);
  }
  CHECK(flips > 16);  // Binomial(64, 1/2): outside (16, 48) with probability < 1e-4
  CHECK(flips < 48);
  CHECK(offsets.size() > 10);
  CHECK(torch::equal(crop_flip(images, padding, 7, 11), out));
  CHECK_FALSE(torch::equal(crop_flip(images, padding, 7, 12), out));
  CHECK_FALSE(torch::equal(crop_flip(images, padding, 8, 11), out));
  // An image's draw does not depend on the rest of the batch.
  CHECK(torch::equal(crop_flip(images.narrow(0, 0, 5), padding, 7, 11), out.narrow(0, 0, 5)));
}

TEST_CASE("the released corruption files are read by severity and checked", "[data][corruption]") {
  testing::TempDir dir;
  const std::string c10c = dir.file("CIFAR-10-C");
  write_cifar10_c(c10c, 3);
  const FileSuite& suite = *find_file_suite("cifar10_c");
  const DatasetInfo cifar10 = find_dataset("cifar10");  // a copy: GCC 14 warns of a reference through a temporary name
  check_file_suite(suite, c10c, cifar10);
  const ImageSplit fog3 = read_file_corruption(suite, c10c, "fog", 3, 0);
  REQUIRE(fog3.images.sizes() == torch::IntArrayRef({3, 3, 32, 32}));
  for (int64_t i = 0; i < 3; ++i) {
    CHECK(fog3.labels[i].item<int64_t>() == (2 * 3 + i) % 10);  // rows 6..8 of labels.npy
    CHECK(fog3.images[i][2][7][30].item<int64_t>() ==
          static_cast<uint8_t>(pixel(i, 2, 7, 30) + 30));
  }
  CHECK(read_file_corruption(suite, c10c, "fog", 5, 2).images.size(0) == 2);

  // Wrong dtype, wrong shape, missing corruption, wrong labels: each names the file.
  write_npy(c10c + "/snow.npy", torch::zeros({15, 32, 32, 3}, torch::kFloat));
  check_error(error_of([&] { check_file_suite(suite, c10c, cifar10); }),
              {"snow.npy", "uint8", "(N, 32, 32, 3)", "Float"});
  write_npy(c10c + "/snow.npy", torch::zeros({15, 28, 28, 1}, torch::kUInt8));
  check_error(error_of([&] { check_file_suite(suite, c10c, cifar10); }),
              {"snow.npy", "(15, 28, 28, 1)"});
  write_npy(c10c + "/snow.npy", torch::zeros({14, 32, 32, 3}, torch::kUInt8));
  check_error(error_of([&] { check_file_suite(suite, c10c, cifar10); }),
              {"snow.npy", "5 equal severity blocks"});
  std::filesystem::remove(c10c + "/snow.npy");
  check_error(error_of([&] { check_file_suite(suite, c10c, cifar10); }), {"snow.npy", "cannot open"});
  write_cifar10_c(c10c, 3);
  write_npy(c10c + "/labels.npy", torch::zeros({14}, torch::kUInt8));
  check_error(error_of([&] { check_file_suite(suite, c10c, cifar10); }), {"labels.npy", "(15,)"});

  // MNIST-C: one folder per corruption.
  const std::string mnist_c = dir.file("mnist_c");
  for (const auto& corruption : suite_corruptions("fmnist_c")) {
    const std::string folder = mnist_c + "/" + corruption.name;
    std::filesystem::create_directories(folder);
    write_npy(folder + "/test_images.npy", torch::full({4, 28, 28, 1}, 9, torch::kUInt8));
    write_npy(folder + "/test_labels.npy", torch::tensor({1, 2, 3, 4}, torch::kLong));
  }
  const FileSuite& digits = *find_file_suite("mnist_c");
  check_file_suite(digits, mnist_c, find_dataset("mnist"));
  const ImageSplit zigzag = read_file_corruption(digits, mnist_c, "zigzag", 1, 0);
  CHECK(zigzag.images.sizes() == torch::IntArrayRef({4, 1, 28, 28}));
  CHECK(testing::as_vector(zigzag.labels) == std::vector<int64_t>{1, 2, 3, 4});
  CHECK(zigzag.images.sum().item<int64_t>() == 4 * 28 * 28 * 9);
}

TEST_CASE("attack specs parse with defaults, labels and clear errors", "[attack]") {
  const auto specs = AttackList::parse("fgsm:eps=2/255,pgd:eps=5/255:steps=10:step=1/255:restarts=2").attacks;
  REQUIRE(specs.size() == 2);
  CHECK(specs[0].kind == "fgsm");
  CHECK(specs[0].eps == Approx(2.0 / 255));
  CHECK(specs[0].step == Approx(2.0 / 255));
  CHECK(specs[0].label() == "fgsm:eps255=2");
  CHECK(specs[1].steps == 10);
  CHECK(specs[1].restarts == 2);
  CHECK(specs[1].random_start);
  CHECK(specs[1].label() == "pgd:eps255=5:steps=10:step255=1:restarts=2");
  const AttackSpec defaults = AttackList::parse("pgd:eps=0.03:start=zero").attacks[0];
  CHECK(defaults.steps == 10);
  CHECK(defaults.step == Approx(2.5 * 0.03 / 10));
  CHECK_FALSE(defaults.random_start);
  CHECK(defaults.label() == "pgd:eps255=7.65:steps=10:step255=1.9125:restarts=1:start=zero");

  check_error(error_of([] { AttackList::parse("cw:eps=1"); }), {"task.attacks", "unknown attack 'cw'"});
  check_error(error_of([] { AttackList::parse("pgd:eps=5/255:stepz=3"); }), {"'pgd:eps=5/255:stepz=3'", "unknown key 'stepz'"});
  check_error(error_of([] { AttackList::parse("fgsm:eps=2/0"); }), {"'2/0'", "divides by zero"});
  check_error(error_of([] { AttackList::parse("fgsm:eps=2/255:steps=3"); }), {"fgsm takes only eps"});
  check_error(error_of([] { AttackList::parse("fgsm:eps=8"); }), {"outside [0, 1]", "8/255"});
  check_error(error_of([] { AttackList::parse("pgd:steps=3"); }), {"eps is required"});
  check_error(error_of([] { AttackList::parse("pgd:eps=0.1:steps=0"); }), {"steps", "'0'"});
  check_error(error_of([] { AttackList::parse("pgd:eps=abc"); }), {"'abc' is not a number"});
  check_error(error_of([] { AttackList::parse("fgsm:eps=1/255,fgsm:eps=1/255"); }), {"listed twice"});
}

TEST_CASE("one PGD step and FGSM match a hand-computed sign-gradient step", "[attack]") {
  // A linear model on 2 x 1 x 1 x 3 pixels: logits = W x + b, 2 classes. The gradient of the
  // cross-entropy with respect to x is W^T (softmax(W x + b) - onehot(y)).
  const std::vector<std::vector<double>> w = {{0.5, -1.0, 2.0}, {-0.3, 0.8, 0.1}};
  const std::vector<double> bias = {0.1, -0.2};
  auto weight = torch::tensor({0.5, -1.0, 2.0, -0.3, 0.8, 0.1}, torch::kDouble).view({2, 3});
  auto b = torch::tensor({0.1, -0.2}, torch::kDouble);
  const PixelLogits model = [&](const torch::Tensor& x) {
    return torch::matmul(x.reshape({x.size(0), 3}), weight.t()) + b;  // [B, 2]
  };
  const std::vector<std::vector<double>> x = {{0.2, 0.5, 0.99}, {0.0, 0.4, 0.7}};
  const std::vector<int64_t> y = {0, 1};
  auto pixels = torch::tensor({0.2, 0.5, 0.99, 0.0, 0.4, 0.7}, torch::kDouble).view({2, 1, 1, 3});
  auto labels = torch::tensor({0, 1}, torch::kLong);

  const double eps = 0.05, step = 0.02;
  auto hand_step = [&](double size) {
    std::vector<std::vector<double>> out = x;
    for (int i = 0; i < 2; ++i) {
      double z[2], p[2];
      for (int k = 0; k < 2; ++k) z[k] = w[k][0] * x[i][0] + w[k][1] * x[i][1] + w[k][2] * x[i][2] + bias[k];
      const double m = std::max(z[0], z[1]);
      const double total = std::exp(z[0] - m) + std::exp(z[1] - m);
      for (int k = 0; k < 2; ++k) p[k] = std::exp(z[k] - m) / total - (k == y[i] ? 1.0 : 0.0);
      for (int j = 0; j < 3; ++j) {
        const double gradient = w[0][j] * p[0] + w[1][j] * p[1];
        const double sign = gradient > 0 ? 1.0 : (gradient < 0 ? -1.0 : 0.0);
        double moved = std::min(std::max(x[i][j] + size * sign, x[i][j] - eps), x[i][j] + eps);
        out[i][j] = std::min(std::max(moved, 0.0), 1.0);
      }
    }
    return out;
  };
  auto check_against = [&](const torch::Tensor& adversarial, const std::vector<std::vector<double>>& expected) {
    for (int i = 0; i < 2; ++i) {
      for (int j = 0; j < 3; ++j) CHECK(adversarial[i][0][0][j].item<double>() == Approx(expected[i][j]));
    }
  };
  const AttackSpec pgd = AttackList::parse(fmt::format("pgd:eps={}:steps=1:step={}:start=zero", eps, step)).attacks[0];
  check_against(attack_pixels(model, pixels, labels, pgd, 1, 0), hand_step(step));
  const AttackSpec fgsm = AttackList::parse(fmt::format("fgsm:eps={}", eps)).attacks[0];
  const auto fgsm_pixels = attack_pixels(model, pixels, labels, fgsm, 1, 0);
  check_against(fgsm_pixels, hand_step(eps));
  CHECK(fgsm_pixels[0][0][0][2].item<double>() <= 1.0);  // 0.99 + 0.05 clipped to the range

  // A random start stays in the eps-ball and the pixel range, is seeded, and depends on the
  // image's index, not the batch.
  const AttackSpec random = AttackList::parse("pgd:eps=0.05:steps=2:step=0.01").attacks[0];
  const auto a = attack_pixels(model, pixels, labels, random, 5, 0);
  CHECK((a - pixels).abs().max().item<double>() <= eps + 1e-12);
  CHECK(a.min().item<double>() >= 0.0);
  CHECK(a.max().item<double>() <= 1.0);
  CHECK(torch::equal(attack_pixels(model, pixels, labels, random, 5, 0), a));
  CHECK_FALSE(torch::equal(attack_pixels(model, pixels, labels, random, 6, 0), a));
  CHECK(torch::equal(attack_pixels(model, pixels.narrow(0, 1, 1), labels.narrow(0, 1, 1), random, 5, 1),
                     a.narrow(0, 1, 1)));
}

TEST_CASE("a trained model's accuracy falls as the attack grows; eps = 0 is clean accuracy",
          "[attack][.slow]") {
  testing::TempDir dir;
  RunConfig config = parse_run_config(
      R"(task: {name: image, train_limit: 4000, val_size: 500, attack_examples: 300,
  attacks: "fgsm:eps=0,fgsm:eps=2/255,fgsm:eps=8/255,pgd:eps=8/255:steps=5,pgd:eps=32/255:steps=5"}
model: {dim: 32, depth: 2, heads: 2, moe: {experts: 4, expert_hidden: 32}}
router: {name: topk, k: 2}
train: {steps: 150, batch_size: 64, log_every: 50, warmup_steps: 10, lr: 0.003}
eval: {max_examples: 300}
)",
      "attack.yaml", {"db=" + dir.file("r.db"), "checkpoint_dir=" + dir.file("ckpt")});
  const RunOutcome outcome = execute_run(config);
  INFO(outcome.error);
  REQUIRE(outcome.status == RunStatus::Done);
  std::map<std::string, double> s(outcome.summaries.begin(), outcome.summaries.end());
  const double clean = s.at("test/accuracy");
  CHECK(clean > 0.6);
  CHECK(s.at("test:fgsm:eps255=0/accuracy") == clean);
  const double fgsm2 = s.at("test:fgsm:eps255=2/accuracy");
  const double fgsm8 = s.at("test:fgsm:eps255=8/accuracy");
  const double pgd8 = s.at("test:pgd:eps255=8:steps=5:step255=4:restarts=1/accuracy");
  const double pgd32 = s.at("test:pgd:eps255=32:steps=5:step255=16:restarts=1/accuracy");
  CHECK(fgsm2 <= clean);
  CHECK(fgsm8 < fgsm2);
  CHECK(pgd8 <= fgsm8);  // the iterated attack is at least as strong at the same radius
  CHECK(pgd32 < pgd8);
  CHECK(pgd32 < 0.5 * clean);
}

TEST_CASE("the image task checks datasets, suites and attacks before training", "[config][cifar]") {
  testing::TempDir dir;
  write_cifar10(dir.path(), 4);
  write_cifar10_c(dir.file("c10c"), 2);
  auto run = [&](const std::string& task) {
    return testing::run_moelab(fmt::format(
        "run {}/experiments/quickstart.yaml db={} checkpoint_dir={} {}", MOELAB_SOURCE_DIR,
        dir.file("r.db"), dir.file("ckpt"), task));
  };
  const std::string cifar = "task.dataset=cifar10 task.data_dir=" + dir.path() +
                            " task.patch=8 task.val_size=5 ";
  auto check_exit = [&](const testing::Command& result, const std::vector<std::string>& parts) {
    CHECK(result.exit_code == 2);
    check_error(result.output, parts);
  };
  check_exit(run("task.dataset=cifar10"), {"task.data_dir", "docs/data.md"});
  check_exit(run(cifar + "task.corruptions=fmnist_c"), {"fmnist_c", "single-channel", "cifar10_c"});
  check_exit(run(cifar + "task.corruptions=cifar10_c"), {"task.corruption_dir"});
  check_exit(run(cifar + "task.corruptions=cifar100_c task.corruption_dir=" + dir.file("c10c")),
             {"cifar100_c", "cifar100", "not cifar10"});
  check_exit(run(cifar + "task.corruptions=imagenet_c"), {"unknown suite 'imagenet_c'"});
  check_exit(run(cifar + "task.patch=7"), {"task.patch = 7", "32"});
  check_exit(run(cifar + "task.attacks=pgd:eps=9"), {"task.attacks", "outside [0, 1]"});
  check_exit(run("task.attacks=fgsm:eps=1/255:restarts=2"), {"fgsm takes only eps"});
  CHECK_FALSE(std::filesystem::exists(dir.file("r.db")));
}

TEST_CASE("a CIFAR-10 run with augmentation, the released corruption files and attacks",
          "[cifar][corruption][attack]") {
  testing::TempDir dir;
  write_cifar10(dir.path(), 40);
  write_cifar10_c(dir.file("c10c"), 10);
  RunConfig config = parse_run_config(
      fmt::format(R"(task: {{name: image, dataset: cifar10, data_dir: {}, patch: 8, val_size: 20,
  augment: crop_flip, corruptions: cifar10_c, corruption_dir: {},
  attacks: "fgsm:eps=0,pgd:eps=4/255:steps=2:restarts=2"}}
model: {{dim: 16, depth: 2, heads: 2, moe: {{experts: 4, expert_hidden: 16}}}}
train: {{steps: 4, batch_size: 8, log_every: 2, warmup_steps: 1}}
)",
                  dir.path(), dir.file("c10c")),
      "cifar.yaml", {"db=" + dir.file("r.db"), "checkpoint_dir=" + dir.file("ckpt")});
  const RunOutcome outcome = execute_run(config);
  INFO(outcome.error);
  REQUIRE(outcome.status == RunStatus::Done);
  std::map<std::string, double> s(outcome.summaries.begin(), outcome.summaries.end());
  CHECK(s.count("cifar10_c/mean_error") == 1);
  CHECK(s.count("cifar10_c:fog/mean_error") == 1);
  CHECK(s.count("cifar10_c:fog:5/accuracy") == 1);
  CHECK(s.at("test:fgsm:eps255=0/accuracy") == s.at("test/accuracy"));
  CHECK(s.count("test:pgd:eps255=4:steps=2:step255=5:restarts=2/accuracy") == 1);
  CHECK(s.count("test/mean_error") == 0);  // attacks are not a corruption suite
  // The mean error over the suite is the mean of the 75 split errors.
  double total = 0.0;
  for (const auto& corruption : suite_corruptions("cifar_c")) {
    for (int severity = 1; severity <= 5; ++severity) {
      total += 1.0 - s.at(fmt::format("cifar10_c:{}:{}/accuracy", corruption.name, severity));
    }
  }
  CHECK(s.at("cifar10_c/mean_error") == Approx(total / 75));
}

}  // namespace moelab

namespace moelab {

TEST_CASE("the shipped robustness sweeps plan: Fashion-MNIST as is, CIFAR-10 given the files",
          "[sweep][cifar]") {
  testing::TempDir dir;
  write_cifar10(dir.path(), 4);
  write_cifar10_c(dir.file("c10c"), 2);
  const std::string sweeps = std::string(MOELAB_SOURCE_DIR) + "/experiments/sweeps/";
  const auto fmnist = testing::run_moelab("sweep plan " + sweeps + "robustness_routers.yaml");
  INFO(fmnist.output);
  CHECK(fmnist.exit_code == 0);
  CHECK_THAT(fmnist.output, Catch::Matchers::Contains("(18 rows)"));
  const auto missing = testing::run_moelab("sweep plan " + sweeps + "robustness_routers_cifar10.yaml");
  CHECK(missing.exit_code == 2);
  CHECK_THAT(missing.output, Catch::Matchers::Contains("data_batch_1.bin"));
  const auto cifar = testing::run_moelab(
      "sweep plan " + sweeps + "robustness_routers_cifar10.yaml task.data_dir=" + dir.path() +
      " task.corruption_dir=" + dir.file("c10c") + " task.val_size=5");
  INFO(cifar.output);
  CHECK(cifar.exit_code == 0);
  CHECK_THAT(cifar.output, Catch::Matchers::Contains("(18 rows)"));
}

}  // namespace moelab
