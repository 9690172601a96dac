// Autocast on and off across LibTorch 1.13 (per-device functions) and 2.x (device-typed ones).
#include "harness/model/precision.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include "harness/core/error.h"

namespace moelab {

namespace {

#if TORCH_VERSION_MAJOR >= 2
bool enabled_for(torch::DeviceType type) { return at::autocast::is_autocast_enabled(type); }
void set_autocast_enabled(torch::DeviceType type, bool on) { at::autocast::set_autocast_enabled(type, on); }
c10::ScalarType autocast_dtype(torch::DeviceType type) { return at::autocast::get_autocast_dtype(type); }
void set_autocast_dtype(torch::DeviceType type, c10::ScalarType dtype) {
  at::autocast::set_autocast_dtype(type, dtype);
}
#else
bool enabled_for(torch::DeviceType type) {
  return type == torch::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
}
void set_autocast_enabled(torch::DeviceType type, bool on) {
  if (type == torch::kCUDA) {
    at::autocast::set_enabled(on);
  } else {
    at::autocast::set_cpu_enabled(on);
  }
}
c10::ScalarType autocast_dtype(torch::DeviceType type) {
  return type == torch::kCUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
}
void set_autocast_dtype(torch::DeviceType type, c10::ScalarType dtype) {
  if (type == torch::kCUDA) {
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
}
#endif

}  // namespace

bool autocast_enabled(torch::DeviceType type) { return enabled_for(type); }

std::optional<c10::ScalarType> autocast_compute_type(torch::Device device) {
  if (!enabled_for(device.type())) return std::nullopt;
  return autocast_dtype(device.type());
}

Precision parse_precision(const std::string& text) {
  if (text == "fp32") return Precision::Fp32;
  if (text == "bf16") return Precision::Bf16;
  throw InternalError("parse_precision: '" + text + "' passed the config's check");
}

AutocastGuard::AutocastGuard(Precision precision, torch::Device device)
    : active_(precision == Precision::Bf16), device_type_(device.type()) {
  if (!active_) return;
  was_enabled_ = enabled_for(device_type_);
  previous_dtype_ = autocast_dtype(device_type_);
  set_autocast_dtype(device_type_, c10::ScalarType::BFloat16);
  set_autocast_enabled(device_type_, true);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  // Leaving the outermost autocast region frees the casts it cached (of the weights).
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast_enabled(device_type_, was_enabled_);
  set_autocast_dtype(device_type_, previous_dtype_);
}

Fp32Region::Fp32Region()
    : cpu_was_enabled_(autocast_enabled(torch::kCPU)), cuda_was_enabled_(autocast_enabled(torch::kCUDA)) {
  set_autocast_enabled(torch::kCPU, false);
  set_autocast_enabled(torch::kCUDA, false);
}

Fp32Region::~Fp32Region() {
  set_autocast_enabled(torch::kCPU, cpu_was_enabled_);
  set_autocast_enabled(torch::kCUDA, cuda_was_enabled_);
}

torch::Tensor as_fp32(const torch::Tensor& x) {
  return x.scalar_type() == torch::kFloat ? x : x.to(torch::kFloat);
}

}  // namespace moelab
