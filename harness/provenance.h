// Provenance of a run: build, library versions, compiler, host and hardware.
#pragma once

#include "harness/config.h"
#include "harness/store.h"

namespace moelab {

Provenance collect_provenance(const RunConfig& config);
std::string torch_version();

// Applies the config's thread settings: LibTorch intra-op threads and OpenBLAS threads
// (through set_blas_threads).
void apply_thread_settings(const RunConfig& config);

// OpenBLAS's thread count when the loaded BLAS is OpenBLAS, set only when it differs:
// setting it in a forked child re-creates OpenBLAS's pool thread, which then spins for about
// 0.1 s on a core the runs need.
void set_blas_threads(int64_t threads);

}  // namespace moelab
