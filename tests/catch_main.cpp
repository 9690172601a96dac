// Catch2 main, compiled once: the test programs run on the BLAS kernels moelab itself would
// choose (harness/core/blas.h) and with its memory policy (harness/core/cpu_memory.h), so that
// they take the time and memory the tool takes.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "harness/core/blas.h"
#include "harness/core/cpu_memory.h"
#include "harness/run/plugins.h"

int main(int argc, char** argv) {
  moelab::select_blas_kernels(argv);
  moelab::configure_cpu_memory();
  moelab::install_plugins();
  return Catch::Session().run(argc, argv);
}
