// Mixed precision (train.precision): bf16 autocast over the model's matrix products, with the
// regions that must stay fp32 (the router and its losses) carved out of it. The weights stay
// fp32 (autocast casts copies per op), so the optimizer updates fp32 master weights.
// Why the router stays fp32: docs/design.md, "Precision".
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <torch/types.h>

#include <optional>
#include <string>

namespace moelab {

enum class Precision { Fp32, Bf16 };

// "fp32" | "bf16" (train.precision, validated by the config) -> the enum.
Precision parse_precision(const std::string& text);

// While alive, ops on `device`'s type run under bf16 autocast (Precision::Bf16) or as they
// are (Fp32); the previous autocast state is restored on destruction.
class AutocastGuard {
 public:
  AutocastGuard(Precision precision, torch::Device device);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false;
  torch::DeviceType device_type_;
  bool was_enabled_ = false;
  c10::ScalarType previous_dtype_ = c10::ScalarType::Float;
};

// While alive, autocast is off on every device type (an fp32 region inside an autocast one).
class Fp32Region {
 public:
  Fp32Region();
  ~Fp32Region();
  Fp32Region(const Fp32Region&) = delete;
  Fp32Region& operator=(const Fp32Region&) = delete;

 private:
  bool cpu_was_enabled_ = false;
  bool cuda_was_enabled_ = false;
};

// Whether autocast is on for `type` in this thread.
bool autocast_enabled(torch::DeviceType type);
// The type autocast computes matrix products in on `device`'s type (bf16 inside an
// AutocastGuard(Bf16)); none outside any autocast region. For kernels autocast cannot reach
// (out= variants inside custom autograd functions), which cast their inputs themselves.
std::optional<c10::ScalarType> autocast_compute_type(torch::Device device);

// `x` as fp32 (itself when it is): what enters an fp32 region from an autocast one.
torch::Tensor as_fp32(const torch::Tensor& x);

}  // namespace moelab
