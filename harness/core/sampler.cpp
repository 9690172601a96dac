// Epoch permutations for the training order.
#include "harness/core/sampler.h"

#include <algorithm>
#include <numeric>

#include "harness/core/error.h"
#include "harness/core/rng.h"

namespace moelab {

std::vector<int64_t> sample_without_replacement(int64_t size, int64_t count, Rng& rng) {
  std::vector<int64_t> order(static_cast<size_t>(size));
  std::iota(order.begin(), order.end(), 0);
  count = std::min(count, size);
  for (int64_t i = 0; i < count; ++i) {
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(i + rng.below(size - i))]);
  }
  order.resize(static_cast<size_t>(count));
  return order;
}

EpochSampler::EpochSampler(int64_t size, uint64_t seed) : size_(size), seed_(seed) {
  MOELAB_CHECK(size > 0, "cannot sample from an empty training set");
}

const std::vector<int64_t>& EpochSampler::permutation(int64_t epoch) {
  if (epoch == cached_epoch_) return cached_;
  cached_.resize(static_cast<size_t>(size_));
  std::iota(cached_.begin(), cached_.end(), 0);
  Rng rng = Rng::keyed({seed_, fnv1a("epoch"), static_cast<uint64_t>(epoch)});
  for (int64_t i = size_ - 1; i > 0; --i) {
    const int64_t j = rng.below(i + 1);
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
