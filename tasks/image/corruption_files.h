// The published corruption benchmarks read from their released files, so CE and mCE compare
// with published numbers:
//   cifar10_c, cifar100_c  CIFAR-10-C / CIFAR-100-C (Hendrycks & Dietterich 2019): DIR/NAME.npy
//                          [5 M, 32, 32, 3] uint8, severity s in rows [(s-1) M, s M), and
//                          DIR/labels.npy [5 M] (M = 10,000 in the release);
//   mnist_c                MNIST-C (Mu & Gilmer 2019): DIR/NAME/test_images.npy [M, 28, 28, 1]
//                          uint8 and DIR/NAME/test_labels.npy [M], one severity.
// Each suite scores the benchmark's 15 corruptions (the lists of the generated twins cifar_c
// and fmnist_c); other files in the folder (CIFAR-10-C's four extra corruptions, MNIST-C's
// identity) are not read.
#pragma once

#include <string>

#include "tasks/image/image_data.h"

namespace moelab {

struct FileSuite {
  const char* name;
  const char* twin;     // the generated suite with the same corruption list
  const char* dataset;  // the only dataset whose test set the files corrupt
  int64_t severities;
};

const FileSuite* find_file_suite(const std::string& name);  // nullptr for the generated suites
const std::vector<FileSuite>& file_suites();

// Every file of the suite in `dir` readable, of an integer or uint8 dtype and of the shape of
// `info`'s images: ConfigError naming the file and what is wrong.
void check_file_suite(const FileSuite& suite, const std::string& dir, const DatasetInfo& info);

// Every file of the suite that is read (images and labels), for provenance.
std::vector<std::string> file_suite_paths(const FileSuite& suite, const std::string& dir);

// The first `count` images (all when count = 0 or more than there are) of one corruption at
// one severity, as [n, C, H, W] uint8 with int64 labels.
ImageSplit read_file_corruption(const FileSuite& suite, const std::string& dir,
                                const std::string& corruption, int64_t severity, int64_t count);

}  // namespace moelab
