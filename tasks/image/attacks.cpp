// FGSM and PGD (L-infinity), and the task.attacks parser.
#include "tasks/image/attacks.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <tuple>

#include "harness/core/error.h"
#include "harness/core/parse.h"
#include "harness/core/rng.h"

namespace moelab {
namespace {

// "0.03", "8/255" -> the number; ConfigError naming the attack and key otherwise.
double parse_number(const std::string& text, const std::string& where) {
  auto decimal = [&](const std::string& part) {
    char* end = nullptr;
    const double value = std::strtod(part.c_str(), &end);
    if (part.empty() || end != part.c_str() + part.size()) {
      throw ConfigError(fmt::format("{}: '{}' is not a number (a decimal or a fraction like 8/255)",
                                    where, text));
    }
    return value;
  };
  const auto slash = text.find('/');
  if (slash == std::string::npos) return decimal(text);
  const double denominator = decimal(text.substr(slash + 1));
  if (denominator == 0.0) throw ConfigError(fmt::format("{}: '{}' divides by zero", where, text));
  return decimal(text.substr(0, slash)) / denominator;
}

AttackSpec parse_attack(const std::string& item) {
  const auto parts = split_text(item, ':');
  const std::string where = fmt::format("task.attacks: '{}'", item);
  AttackSpec spec;
  spec.kind = parts.empty() ? "" : parts[0];
  if (spec.kind != "fgsm" && spec.kind != "pgd") {
    throw ConfigError(fmt::format("{}: unknown attack '{}' (fgsm, pgd)", where, spec.kind));
  }
  bool has_eps = false, has_step = false;
  spec.steps = spec.kind == "pgd" ? 10 : 1;
  spec.random_start = spec.kind == "pgd";
  for (size_t i = 1; i < parts.size(); ++i) {
    const auto equals = parts[i].find('=');
    const std::string key = parts[i].substr(0, equals);
    const std::string value = equals == std::string::npos ? "" : parts[i].substr(equals + 1);
    const std::string at = fmt::format("{}: {}", where, key);
    if (equals == std::string::npos) {
      throw ConfigError(fmt::format("{}: '{}' is not key=value", where, parts[i]));
    } else if (key == "eps") {
      spec.eps = parse_number(value, at);
      has_eps = true;
    } else if (spec.kind == "fgsm") {
      throw ConfigError(fmt::format("{}: fgsm takes only eps, not '{}'", where, key));
    } else if (key == "steps" || key == "restarts") {
      const auto number = parse_int64(value);
      if (!number || *number < 1) {
        throw ConfigError(fmt::format("{}: '{}' is not a whole number >= 1", at, value));
      }
      (key == "steps" ? spec.steps : spec.restarts) = *number;
    } else if (key == "step") {
      spec.step = parse_number(value, at);
      has_step = true;
      if (spec.step <= 0.0) throw ConfigError(fmt::format("{}: {} must be > 0", at, value));
    } else if (key == "start") {
      if (value != "random" && value != "zero") {
        throw ConfigError(fmt::format("{}: '{}' is not random or zero", at, value));
      }
      spec.random_start = value == "random";
    } else {
      throw ConfigError(fmt::format("{}: unknown key '{}' (pgd: eps, steps, step, restarts, "
                                    "start)",
                                    where, key));
    }
  }
  if (!has_eps) throw ConfigError(fmt::format("{}: eps is required", where));
  if (spec.eps < 0.0 || spec.eps > 1.0) {
    throw ConfigError(fmt::format("{}: eps = {} is outside [0, 1] (pixels are in [0, 1]; "
                                  "write 8/255 for 8 grey levels)",
                                  where, spec.eps));
  }
  if (spec.kind == "fgsm") spec.step = spec.eps;
  if (spec.kind == "pgd" && !has_step) spec.step = 2.5 * spec.eps / static_cast<double>(spec.steps);
  return spec;
}

std::string in_255ths(double value) { return fmt::format("{:g}", value * 255.0); }

// A size on [0, 1] pixels as written canonically: "8/255" when a whole number of grey levels
// over 255 is exactly this value (parse_number divides as here), else the shortest decimal
// that reads back to it.
std::string size_text(double value) {
  const double grey_levels = std::round(value * 255.0);
  if (grey_levels / 255.0 == value) return fmt::format("{}/255", grey_levels);
  return fmt::format("{}", value);
}

auto order_key(const AttackSpec& spec) {
  return std::make_tuple(spec.kind, spec.eps, spec.steps, spec.step, spec.restarts,
                         !spec.random_start);
}

// Uniform noise in [-eps, eps] for each image: [B, C, H, W].
torch::Tensor random_start(const torch::Tensor& pixels, const AttackSpec& spec, uint64_t seed,
                           int64_t restart, int64_t first_index) {
  auto noise = torch::empty(pixels.sizes(), torch::kFloat);
  const int64_t batch = pixels.size(0), per_image = pixels.numel() / std::max<int64_t>(batch, 1);
  float* data = noise.data_ptr<float>();
  for (int64_t b = 0; b < batch; ++b) {
    Rng rng = Rng::keyed({seed, fnv1a(spec.label()), static_cast<uint64_t>(restart),
                          static_cast<uint64_t>(first_index + b)});
    for (int64_t i = 0; i < per_image; ++i) {
      data[b * per_image + i] = static_cast<float>(rng.uniform(-spec.eps, spec.eps));
    }
  }
  return noise.to(pixels.device());
}

torch::Tensor input_gradient(const PixelLogits& logits, const torch::Tensor& pixels,
                             const torch::Tensor& labels) {
  auto x = pixels.detach().requires_grad_(true);
  auto loss = torch::nn::functional::cross_entropy(
      logits(x), labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
  return torch::autograd::grad({loss}, {x})[0];
}

// One restart: the sign-gradient ascent projected on the eps-ball and [0, 1].
torch::Tensor ascend(const PixelLogits& logits, const torch::Tensor& clean,
                     const torch::Tensor& labels, const AttackSpec& spec, uint64_t seed,
                     int64_t restart, int64_t first_index) {
  auto x = clean;
  if (spec.random_start) {
    x = (clean + random_start(clean, spec, seed, restart, first_index)).clamp(0.0, 1.0);
  }
  const auto low = (clean - spec.eps).clamp_min(0.0), high = (clean + spec.eps).clamp_max(1.0);
  for (int64_t step = 0; step < spec.steps; ++step) {
    const auto gradient = input_gradient(logits, x, labels);
    x = torch::min(torch::max(x + spec.step * gradient.sign(), low), high).detach();
  }
  return x;
}

}  // namespace

const char* const kAttacksHelp =
    "adversarial attacks on the test set after training, comma-separated: fgsm:eps=E, "
    "pgd:eps=E[:steps=10][:step=2.5E/steps][:restarts=1][:start=random|zero]; E as 8/255 or "
    "0.03 on [0, 1] pixels (L-infinity)";

std::string AttackSpec::label() const {
  if (kind == "fgsm") return "fgsm:eps255=" + in_255ths(eps);
  return fmt::format("pgd:eps255={}:steps={}:step255={}:restarts={}{}", in_255ths(eps), steps,
                     in_255ths(step), restarts, random_start ? "" : ":start=zero");
}

std::string AttackSpec::canonical() const {
  if (kind == "fgsm") return "fgsm:eps=" + size_text(eps);
  std::string text = fmt::format("pgd:eps={}:steps={}", size_text(eps), steps);
  if (step != 2.5 * eps / static_cast<double>(steps)) text += ":step=" + size_text(step);
  if (restarts != 1) text += fmt::format(":restarts={}", restarts);
  if (!random_start) text += ":start=zero";
  return text;
}

AttackList AttackList::parse(const std::string& text) {
  AttackList list;
  if (text.empty()) return list;
  for (const auto& item : split_text(text, ',')) {
    const AttackSpec spec = parse_attack(item);
    for (const auto& earlier : list.attacks) {
      if (order_key(earlier) == order_key(spec) || earlier.label() == spec.label()) {
        throw ConfigError(fmt::format("'{}' is listed twice (as '{}')", item, earlier.canonical()));
      }
    }
    list.attacks.push_back(spec);
  }
  std::sort(list.attacks.begin(), list.attacks.end(),
            [](const AttackSpec& a, const AttackSpec& b) { return order_key(a) < order_key(b); });
  return list;
}

std::string AttackList::canonical() const {
  std::vector<std::string> items;
  for (const auto& spec : attacks) items.push_back(spec.canonical());
  return fmt::format("{}", fmt::join(items, ","));
}

torch::Tensor attack_pixels(const PixelLogits& logits, const torch::Tensor& pixels,
                            const torch::Tensor& labels, const AttackSpec& spec, uint64_t seed,
                            int64_t first_index) {
  torch::AutoGradMode enable_grad(true);
  auto best = ascend(logits, pixels, labels, spec, seed, 0, first_index);
  for (int64_t restart = 1; restart < spec.restarts; ++restart) {
    torch::Tensor fooled;
    {
      torch::NoGradGuard no_grad;
      fooled = logits(best).argmax(-1).ne(labels);  // [B]
    }
    if (fooled.all().item<bool>()) break;
    const auto candidate = ascend(logits, pixels, labels, spec, seed, restart, first_index);
    best = torch::where(fooled.view({-1, 1, 1, 1}), best, candidate);
  }
  return best;
}

}  // namespace moelab
