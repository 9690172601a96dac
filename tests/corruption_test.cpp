// Image corruptions: every one is deterministic, stays in range and changes a test image;
// the statistics each is defined by are pinned on fixed images. Plus the CE / mCE formulas.
#include <cmath>

#include "harness/report/robustness.h"
#include "tasks/image/corruptions.h"
#include "test_util.h"

namespace moelab {
namespace {

// A 28x28 test pattern: a bright square on a dark background with a horizontal ramp.
torch::Tensor pattern(int64_t count = 4) {
  auto images = torch::zeros({count, 28, 28}, torch::kByte);
  auto a = images.accessor<uint8_t, 3>();
  for (int64_t n = 0; n < count; ++n) {
    for (int64_t r = 0; r < 28; ++r) {
      for (int64_t c = 0; c < 28; ++c) {
        const bool inside = r >= 8 && r < 20 && c >= 8 && c < 20;
        a[n][r][c] = static_cast<uint8_t>(inside ? 200 : 4 * c);
      }
    }
  }
  return images;
}

torch::Tensor flat(uint8_t value, int64_t count = 16) {
  return torch::full({count, 28, 28}, value, torch::kByte);
}

torch::Tensor as_float(const torch::Tensor& images) { return images.to(torch::kDouble) / 255.0; }

torch::Tensor apply(const std::string& suite, const std::string& name, int64_t severity,
                    const torch::Tensor& images, uint64_t seed = 11) {
  return corrupt_images(images, find_corruption(suite, name), severity, seed);
}

}  // namespace

TEST_CASE("every corruption is deterministic, in range and changes the image", "[corruption]") {
  const auto images = pattern();
  REQUIRE(corruption_registry().size() == 30);
  for (const auto& entry : corruption_registry()) {
    for (int64_t severity = 1; severity <= entry.severities; ++severity) {
      INFO(entry.suite << " " << entry.name << " severity " << severity);
      auto once = corrupt_images(images, entry, severity, 5);
      auto again = corrupt_images(images, entry, severity, 5);
      CHECK(once.equal(again));
      CHECK(once.sizes() == images.sizes());
      CHECK(once.scalar_type() == torch::kByte);
      CHECK_FALSE(once.equal(images));
    }
  }
  CHECK(suite_corruptions("fmnist_c").size() == 15);
  CHECK(suite_corruptions("cifar_c").size() == 15);
  CHECK_THROWS_AS(suite_corruptions("imagenet_c"), ConfigError);
  CHECK_THROWS(corrupt_images(images, find_corruption("cifar_c", "fog"), 6, 1));
}

TEST_CASE("a corrupted image depends on its index and seed, not on the batch", "[corruption]") {
  const auto images = pattern(8);
  const auto& noise = find_corruption("cifar_c", "gaussian_noise");
  auto all = corrupt_images(images, noise, 3, 1);
  auto tail = corrupt_images(images.narrow(0, 0, 4), noise, 3, 1);
  CHECK(all.narrow(0, 0, 4).equal(tail));
  CHECK_FALSE(all[0].equal(all[1]));  // per-image generators
  CHECK_FALSE(corrupt_images(images, noise, 3, 2).equal(all));
}

TEST_CASE("noise corruptions have their specified statistics", "[corruption]") {
  const auto grey = flat(128, 64);
  const double base = 128.0 / 255.0;
  SECTION("gaussian noise: sigma 0.04 ... 0.10") {
    const double sigmas[] = {0.04, 0.06, 0.08, 0.09, 0.10};
    for (int64_t s = 1; s <= 5; ++s) {
      auto diff = as_float(apply("cifar_c", "gaussian_noise", s, grey)) - base;
      // Truncation to uint8 lowers the mean by half a level; the spread is sigma.
      CHECK(diff.std().item<double>() == Approx(sigmas[s - 1]).epsilon(0.05));
    }
  }
  SECTION("shot noise: variance x / lambda") {
    auto out = as_float(apply("cifar_c", "shot_noise", 5, grey));  // lambda 50
    CHECK(out.var().item<double>() == Approx(base / 50).epsilon(0.08));
    CHECK(out.mean().item<double>() == Approx(base).epsilon(0.02));
  }
  SECTION("impulse noise: a fraction `amount` of pixels set to 0 or 1") {
    auto out = apply("fmnist_c", "impulse_noise", 1, grey);  // amount 0.17
    const double flipped = out.ne(128).to(torch::kDouble).mean().item<double>();
    CHECK(flipped == Approx(0.17).epsilon(0.05));
    CHECK(out.eq(255).sum().item<int64_t>() + out.eq(0).sum().item<int64_t>() ==
          out.ne(128).sum().item<int64_t>());
  }
}

TEST_CASE("photometric corruptions follow their formulas", "[corruption]") {
  const auto images = pattern();
  const auto x = as_float(images);
  SECTION("brightness adds c and clips") {
    auto out = as_float(apply("cifar_c", "brightness", 5, images));  // +0.3
    CHECK(torch::allclose(out, (x + 0.3).clamp(0, 1), 0, 1.0 / 255 + 1e-6));
    auto mnist = as_float(apply("fmnist_c", "brightness", 1, images));  // +0.5
    CHECK(torch::allclose(mnist, (x + 0.5).clamp(0, 1), 0, 1.0 / 255 + 1e-6));
  }
  SECTION("contrast scales deviations from the mean by c") {
    const double factors[] = {0.75, 0.5, 0.4, 0.3, 0.15};
    for (int64_t s = 1; s <= 5; ++s) {
      auto out = as_float(apply("cifar_c", "contrast", s, images));
      const double ratio = out[0].std().item<double>() / x[0].std().item<double>();
      CHECK(ratio == Approx(factors[s - 1]).margin(0.01));
    }
  }
  SECTION("stripe inverts the 7 outer columns on each side") {
    auto out = apply("fmnist_c", "stripe", 1, images);
    CHECK(out.narrow(2, 0, 7).equal(255 - images.narrow(2, 0, 7)));
    CHECK(out.narrow(2, 21, 7).equal(255 - images.narrow(2, 21, 7)));
    CHECK(out.narrow(2, 7, 14).equal(images.narrow(2, 7, 14)));
  }
  SECTION("fog departs further from the image at higher severity") {
    auto change = [&](int64_t s) {
      return (as_float(apply("cifar_c", "fog", s, images)) - x).abs().mean().item<double>();
    };
    CHECK(change(5) > change(1));
    CHECK(change(1) > 0.0);
  }
}

TEST_CASE("geometric corruptions move content as specified", "[corruption]") {
  const auto images = pattern(32);
  SECTION("translate shifts by 3 pixels in each axis") {
    auto out = apply("fmnist_c", "translate", 1, images);
    // The bright square (rows/cols 8..19) moves to 5..16 or 11..22 in each axis.
    for (int64_t n = 0; n < 32; ++n) {
      auto mask = out[n].ge(190);
      auto rows = mask.any(1).nonzero().flatten(), cols = mask.any(0).nonzero().flatten();
      const int64_t top = rows[0].item<int64_t>(), left = cols[0].item<int64_t>();
      CHECK((top == 5 || top == 11));
      CHECK((left == 5 || left == 11));
    }
  }
  SECTION("scale shrinks the square to 70% about the centre") {
    auto mask = apply("fmnist_c", "scale", 1, images)[0].ge(150);
    const int64_t side = mask.any(1).sum().item<int64_t>();
    CHECK(side >= 8);
    CHECK(side <= 10);  // 12 * 0.7 = 8.4, plus bilinear edges
  }
  SECTION("rotate and shear keep the mass roughly in place") {
    for (const char* name : {"rotate", "shear"}) {
      auto out = as_float(apply("fmnist_c", name, 1, pattern(1).clone().fill_(0).index_put_(
                                                        {0, torch::indexing::Slice(10, 18),
                                                         torch::indexing::Slice(10, 18)},
                                                        200)));
      CHECK(out.sum().item<double>() == Approx(64 * 200 / 255.0).epsilon(0.15));
    }
  }
}

TEST_CASE("blur and digital corruptions", "[corruption]") {
  const auto constant = flat(90, 2);
  SECTION("blurs and pixelation leave a constant image constant") {
    for (const char* name : {"defocus_blur", "zoom_blur", "pixelate", "gaussian_noise"}) {
      if (std::string(name) == "gaussian_noise") continue;
      for (int64_t s = 1; s <= 5; ++s) {
        auto out = apply("cifar_c", name, s, constant).to(torch::kInt);
        INFO(name << " " << s);
        CHECK((out - 90).abs().max().item<int>() <= 1);
      }
    }
  }
  SECTION("blurs lower the pattern's edge energy, more at higher severity") {
    const auto images = pattern();
    auto edge_energy = [](const torch::Tensor& t) {
      auto f = as_float(t);
      return (f.narrow(2, 1, 27) - f.narrow(2, 0, 27)).abs().mean().item<double>();
    };
    for (const char* name : {"defocus_blur", "motion_blur", "zoom_blur"}) {
      INFO(name);
      const double s1 = edge_energy(apply("cifar_c", name, 1, images));
      const double s5 = edge_energy(apply("cifar_c", name, 5, images));
      CHECK(s1 < edge_energy(images) * 1.05);
      CHECK(s5 < s1);
    }
  }
  SECTION("glass blur moves pixels locally and keeps the mean") {
    const auto images = pattern();
    for (int64_t s = 1; s <= 5; ++s) {
      auto out = as_float(apply("cifar_c", "glass_blur", s, images));
      CHECK(out.mean().item<double>() == Approx(as_float(images).mean().item<double>()).epsilon(0.02));
    }
  }
  SECTION("JPEG error is small and larger at quality 40 than at 80") {
    const auto images = pattern();
    const auto x = as_float(images);
    auto error = [&](int64_t s) {
      return (as_float(apply("cifar_c", "jpeg_compression", s, images)) - x).abs().mean().item<double>();
    };
    CHECK(error(5) > error(1));
    CHECK(error(5) < 0.05);
    CHECK(error(1) > 0.0);
  }
  SECTION("canny finds the square's outline and nothing in flat regions") {
    auto edges = apply("fmnist_c", "canny_edges", 1, flat(0, 1).index_put_(
                                                          {0, torch::indexing::Slice(8, 20),
                                                           torch::indexing::Slice(8, 20)},
                                                          255));
    CHECK(edges[0][14][14].item<int>() == 0);   // inside
    CHECK(edges[0][2][2].item<int>() == 0);     // outside
    CHECK(edges[0].eq(255).sum().item<int64_t>() >= 30);  // the outline, about 4 * 12 pixels
    CHECK(edges[0].narrow(0, 7, 2).eq(255).any().item<bool>());  // top edge rows 7-8
  }
}

TEST_CASE("CE, mCE and relative mCE against a baseline, on hand-computed values", "[robustness]") {
  CorruptionErrors model{0.10, {{"blur", {0.2, 0.3}}, {"noise", {0.4, 0.6}}}};
  CorruptionErrors baseline{0.20, {{"blur", {0.4, 0.6}}, {"noise", {0.5, 0.5}}}};
  const RobustnessScores scores = robustness_scores(model, baseline);
  CHECK(scores.ce.at("blur") == Approx(0.5));            // 0.5 / 1.0
  CHECK(scores.ce.at("noise") == Approx(1.0));           // 1.0 / 1.0
  CHECK(scores.mce == Approx(0.75));
  CHECK(scores.relative_ce.at("blur") == Approx(0.5));   // (0.5 - 0.2) / (1.0 - 0.4)
  CHECK(scores.relative_ce.at("noise") == Approx(8.0 / 6.0));  // (1.0 - 0.2) / (1.0 - 0.4)
  CHECK(scores.relative_mce == Approx((0.5 + 8.0 / 6.0) / 2));
  CHECK(scores.mean_error == Approx(0.375));
  CorruptionErrors missing{0.2, {{"blur", {0.4, 0.6}}}};
  CHECK_THROWS_WITH(robustness_scores(model, missing), Catch::Matchers::Contains("noise"));
}

}  // namespace moelab
