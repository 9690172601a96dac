// Provenance of a run: build, library versions, compiler, host and hardware.
#pragma once

#include "harness/config.h"
#include "harness/store.h"

namespace moelab {

Provenance collect_provenance(const RunConfig& config);
std::string torch_version();

// Applies the config's thread settings: LibTorch intra-op threads and OpenBLAS threads
// (through openblas_set_num_threads when the loaded BLAS is OpenBLAS).
void apply_thread_settings(const RunConfig& config);

}  // namespace moelab
