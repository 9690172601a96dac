// Provenance of a run: build, library versions, compiler, host and hardware.
#pragma once

#include "harness/config/config.h"
#include "harness/store/store.h"

namespace moelab {

Provenance collect_provenance(const RunConfig& config);
std::string torch_version();

// Applies the config's thread settings through set_thread_counts.
void apply_thread_settings(const RunConfig& config);

// LibTorch's intra-op threads and, when the loaded BLAS is OpenBLAS, OpenBLAS's threads.
// A sweep's supervisor sets them before forking workers, which then inherit them: in a forked
// child, setting LibTorch's count for the first time re-creates its thread pool (about 8 ms
// here) and setting OpenBLAS's re-creates OpenBLAS's pool thread, which then spins for about
// 0.1 s on a core the runs need. OpenBLAS's is therefore set only when it differs.
void set_thread_counts(int64_t torch_threads, int64_t blas_threads);

}  // namespace moelab
