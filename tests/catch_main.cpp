// Catch2 main, compiled once: the test programs run on the BLAS kernels moelab itself would
// choose (harness/core/blas.h), so that they take the time the tool takes.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "harness/core/blas.h"

int main(int argc, char** argv) {
  moelab::select_blas_kernels(argv);
  return Catch::Session().run(argc, argv);
}
