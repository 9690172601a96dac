// BLAS identification and kernel selection.
#include "harness/core/blas.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <set>

namespace moelab {
namespace {

using NameFunction = char* (*)();

std::string call_openblas(const char* symbol) {
  auto function = reinterpret_cast<NameFunction>(dlsym(RTLD_DEFAULT, symbol));
  if (function == nullptr) return "";
  const char* text = function();
  return text == nullptr ? "" : text;
}

// The file that defines the BLAS's sgemm_ (the one LibTorch calls).
std::string blas_library_file() {
  void* symbol = dlsym(RTLD_DEFAULT, "sgemm_");
  Dl_info info{};
  if (symbol == nullptr || dladdr(symbol, &info) == 0 || info.dli_fname == nullptr) return "unknown";
  return info.dli_fname;
}

}  // namespace

std::string openblas_core() { return call_openblas("openblas_get_corename"); }

std::string blas_description() {
  const std::string config = call_openblas("openblas_get_config");  // names the core last
  if (config.empty()) return "reference BLAS or other: " + blas_library_file();
  return config;
}

CpuFeatures cpu_features() {
  __builtin_cpu_init();
  CpuFeatures features;
  features.avx2 = __builtin_cpu_supports("avx2");
  features.fma = __builtin_cpu_supports("fma");
  features.avx512f = __builtin_cpu_supports("avx512f");
  return features;
}

std::string better_openblas_core(const CpuFeatures& features, const std::string& running) {
  if (running.empty()) return "";
  // OpenBLAS's x86-64 cores with AVX-512 kernels, and those with at least AVX2 ones (names
  // as openblas_get_corename gives them; 0.3.21 runs Sapphire Rapids as Cooperlake).
  static const std::set<std::string> avx512 = {"SkylakeX", "Cooperlake", "SapphireRapids"};
  static const std::set<std::string> avx2 = {"Haswell", "Zen", "SkylakeX", "Cooperlake",
                                             "SapphireRapids"};
  if (features.avx512f && avx512.count(running) == 0) return "SkylakeX";
  if (features.avx2 && features.fma && avx2.count(running) == 0) return "Haswell";
  return "";
}

void select_blas_kernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr || std::getenv("MOELAB_BLAS_SELECTED") != nullptr) {
    return;  // the user's choice, or already selected
  }
  const std::string core = better_openblas_core(cpu_features(), openblas_core());
  if (core.empty()) return;
  setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
  setenv("MOELAB_BLAS_SELECTED", "1", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: carry on with the fallback core
  unsetenv("OPENBLAS_CORETYPE");
}

}  // namespace moelab
