// Collects provenance and applies the thread settings.
#include "harness/train/provenance.h"

#include <dlfcn.h>
#include <fmt/format.h>
#include <omp.h>
#include <torch/torch.h>
#include <torch/version.h>
#include <unistd.h>

#include <fstream>

#include "harness/core/blas.h"
#include "harness/core/build_info.h"

namespace moelab {
namespace {

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "unknown";
}

}  // namespace

std::string torch_version() { return TORCH_VERSION; }

Provenance collect_provenance(const RunConfig& config) {
  Provenance p;
  p.git_commit = kGitCommit;
  p.git_dirty = kGitDirty;
  p.moelab_version = kVersion;
  p.torch_version = torch_version();
  p.compiler = fmt::format("g++ {}", __VERSION__);
  static const std::string host = host_name(), cpu = cpu_model(),  // fixed for the process
      blas = blas_description();
  p.host = host;
  p.cpu_model = cpu;
  p.gpu_model = "";
  if (config.device != "cpu" && torch::cuda::is_available()) {
    p.gpu_model = fmt::format("cuda ({} device(s))", torch::cuda::device_count());
  }
  p.threads = config.threads;
  p.blas_threads = config.blas_threads;
  p.blas = blas;
  return p;
}

void apply_thread_settings(const RunConfig& config) {
  set_thread_counts(config.threads, config.blas_threads);
}

void set_thread_counts(int64_t torch_threads, int64_t blas_threads) {
  torch::set_num_threads(static_cast<int>(torch_threads));
  // The OpenMP runtime moelab's own parallel loops use: LibTorch's, except where a LibTorch
  // bundles a renamed copy (pip wheels), which set_num_threads does not reach.
  omp_set_num_threads(static_cast<int>(torch_threads));
  using GetThreads = int (*)();
  using SetThreads = void (*)(int);
  auto get = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set == nullptr || (get != nullptr && get() == blas_threads)) return;
  set(static_cast<int>(blas_threads));
}

}  // namespace moelab
