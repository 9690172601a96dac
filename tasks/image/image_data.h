// Image datasets as the task consumes them: uint8 pixels [N, C, H, W] with int64 labels, read
// from the official releases — Fashion-MNIST and MNIST (gzip or plain IDX), CIFAR-10 and
// CIFAR-100 (the binary versions) — with each dataset's per-channel pixel statistics, and the
// seeded training augmentation (random crop with zero padding, horizontal flip).
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace moelab {

struct ImageSplit {
  torch::Tensor images;  // [N, C, H, W] uint8
  torch::Tensor labels;  // [N] int64
};

struct DatasetInfo {
  const char* name;
  int64_t classes;  // CIFAR-100: 100 fine labels (20 with task.labels = coarse)
  int64_t channels, side;
  std::vector<double> mean, std;  // per channel, of [0, 1] pixels of the training set
  const char* default_dir;        // "" = none: task.data_dir must be set
  const char* files;              // what task.data_dir must hold, for help and errors
};

const std::vector<DatasetInfo>& image_datasets();
const DatasetInfo& find_dataset(const std::string& name);  // ConfigError listing the known ones

struct DatasetRequest {
  std::string dataset;
  std::string data_dir;  // "" = the dataset's default folder
  bool coarse_labels = false;  // CIFAR-100's 20 superclasses instead of the 100 classes
};

std::string dataset_dir(const DatasetRequest& request);  // ConfigError when none is known
int64_t dataset_classes(const DatasetRequest& request);

// Cheap checks (files readable, sizes a whole number of records, headers): ConfigError naming
// the file. Returns the training set's size.
int64_t check_dataset_files(const DatasetRequest& request);

struct LoadedDataset {
  ImageSplit train, test;  // the official training and test sets
  std::vector<std::string> files;
};
// Reads (once per process per file version) and checks every record: sizes and label ranges.
LoadedDataset load_dataset(const DatasetRequest& request);

// ConfigError "WHAT: label L is not a class of 0..classes-1" unless every label is one.
void check_label_range(const torch::Tensor& labels, int64_t classes, const std::string& what);

// [B, C, H, W] uint8 -> [B, C, H, W] float, (x / 255 - mean_c) / std_c.
torch::Tensor normalise_pixels(const torch::Tensor& images_u8, const DatasetInfo& info);
// The same from [0, 1] floats (an attack's pixels).
torch::Tensor normalise_unit(const torch::Tensor& pixels, const DatasetInfo& info);

// Random crop of the zero-padded image and a horizontal flip with probability 1/2, one draw
// per image from a generator keyed by (seed, step, image): [B, C, H, W] uint8 -> same.
torch::Tensor crop_flip(const torch::Tensor& images_u8, int64_t padding, uint64_t seed,
                        int64_t step);

}  // namespace moelab
