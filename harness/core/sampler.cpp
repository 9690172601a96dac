// Epoch permutations for the training order.
#include "harness/core/sampler.h"

#include <numeric>

#include "harness/core/error.h"

namespace moelab {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

EpochSampler::EpochSampler(int64_t size, uint64_t seed) : size_(size), seed_(seed) {
  MOELAB_CHECK(size > 0, "cannot sample from an empty training set");
}

const std::vector<int64_t>& EpochSampler::permutation(int64_t epoch) {
  if (epoch == cached_epoch_) return cached_;
  cached_.resize(static_cast<size_t>(size_));
  std::iota(cached_.begin(), cached_.end(), 0);
  uint64_t state = seed_ * 0x9e3779b97f4a7c15ULL + static_cast<uint64_t>(epoch) + 1;
  for (int64_t i = size_ - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(splitmix64(state) % static_cast<uint64_t>(i + 1));
    std::swap(cached_[static_cast<size_t>(i)], cached_[static_cast<size_t>(j)]);
  }
  cached_epoch_ = epoch;
  return cached_;
}

std::vector<int64_t> EpochSampler::batch(int64_t step, int64_t batch_size) {
  std::vector<int64_t> indices;
  indices.reserve(static_cast<size_t>(batch_size));
  for (int64_t i = 0; i < batch_size; ++i) {
    const int64_t position = step * batch_size + i;
    indices.push_back(permutation(position / size_)[static_cast<size_t>(position % size_)]);
  }
  return indices;
}

}  // namespace moelab
