// The BLAS LibTorch calls (the system libblas.so.3: OpenBLAS after set-up), and the choice of
// its kernels. Debian 12's OpenBLAS 0.3.21 does not recognise recent Xeons and falls back to
// its generic Prescott kernels, about 5x slower on matmul; OPENBLAS_CORETYPE, read when the
// library loads, selects a core by name. select_blas_kernels() re-executes the process with
// the core that suits the CPU when the running one is such a fallback.
#pragma once

#include <string>

namespace moelab {

// OpenBLAS's configuration, which names the running core ("OpenBLAS 0.3.21 NO_LAPACKE
// DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64"), or the library's file when the BLAS is
// not OpenBLAS ("reference BLAS or other: /usr/lib/.../libblas.so.3").
std::string blas_description();
// The running OpenBLAS core ("SkylakeX", "Prescott"), or "" when the BLAS is not OpenBLAS.
std::string openblas_core();

// What the CPU offers that OpenBLAS's kernels use.
struct CpuFeatures {
  bool avx2 = false, fma = false, avx512f = false;
};
CpuFeatures cpu_features();

// The OpenBLAS core to request for a CPU with `features` when `running` is a generic
// fallback below what the CPU supports: "SkylakeX" with AVX-512, "Haswell" with AVX2 and FMA;
// "" when the running core already uses the CPU's widest vectors (or nothing is known).
std::string better_openblas_core(const CpuFeatures& features, const std::string& running);

// Call first in main(): when OpenBLAS runs a fallback core on this CPU and the user has not
// chosen one (OPENBLAS_CORETYPE unset), re-executes this program with OPENBLAS_CORETYPE set
// to better_openblas_core() (once: MOELAB_BLAS_SELECTED marks the second start). Returns when
// nothing is to change or the re-execution fails.
void select_blas_kernels(char** argv);

}  // namespace moelab
