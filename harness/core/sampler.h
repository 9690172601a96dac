// Seeded data order: a fresh permutation of the training set every epoch, so that batch
// number s depends only on (seed, s). Fisher-Yates over the keyed stream (seed, "epoch",
// epoch), identical on every platform and LibTorch version, and cheap to restart from any
// step (resume).
#pragma once

#include <cstdint>
#include <vector>

namespace moelab {

class Rng;

// `count` distinct indices of [0, size), drawn by the first `count` steps of a Fisher-Yates
// shuffle with `rng` (step i swaps i with a uniform pick of [i, size)); all of them, shuffled,
// when count >= size.
std::vector<int64_t> sample_without_replacement(int64_t size, int64_t count, Rng& rng);

class EpochSampler {
 public:
  EpochSampler(int64_t size, uint64_t seed);
  std::vector<int64_t> batch(int64_t step, int64_t batch_size);  // example indices

 private:
  const std::vector<int64_t>& permutation(int64_t epoch);
  int64_t size_;
  uint64_t seed_;
  int64_t cached_epoch_ = -1;
  std::vector<int64_t> cached_;
};

}  // namespace moelab
