// Image corruption benchmarks, reimplemented for single-channel images (the released
// CIFAR-10-C / MNIST-C files are not available offline; numbers from these are not
// comparable bit for bit with published ones). Two suites:
//   fmnist_c  the 15 MNIST-C corruptions (Mu & Gilmer 2019) at their fixed benchmark
//             severity, applied to Fashion-MNIST: severity 1 only;
//   cifar_c   the 15 CIFAR-10-C corruptions (Hendrycks & Dietterich 2019) at the 32-pixel
//             parameters, severities 1-5, single-channel (brightness and contrast reduce to
//             their grayscale forms; frost uses a procedural texture, a substitute for the
//             photographs the reference code ships).
// Every image is corrupted with its own generator seeded by (seed, suite, corruption,
// severity, image index), so a corrupted test set is the same whatever the batch layout.
#pragma once

#include <torch/torch.h>

#include <string>
#include <string_view>
#include <vector>

#include "harness/core/rng.h"
#include "tasks/image/image_ops.h"

namespace moelab {

using CorruptionFunction = Image (*)(const Image& image, int64_t severity, Rng& rng);

struct CorruptionEntry {
  const char* suite;
  const char* name;
  int64_t severities;  // 1 for the fixed-severity suite
  CorruptionFunction apply;
};

const std::vector<CorruptionEntry>& corruption_registry();  // canonical order per suite
std::vector<CorruptionEntry> suite_corruptions(const std::string& suite);  // ConfigError if unknown
// Views, not references: the entry returned outlives the arguments, temporaries included.
const CorruptionEntry& find_corruption(std::string_view suite, std::string_view name);

// images: [N, H, W] uint8 -> [N, H, W] uint8 (clip to [0, 1], then x255 truncated, as the
// reference scripts' np.uint8 cast).
torch::Tensor corrupt_images(const torch::Tensor& images, const CorruptionEntry& corruption,
                             int64_t severity, uint64_t seed);

}  // namespace moelab
