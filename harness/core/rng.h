// The project's one derivation of seeded randomness: every stream is a SplitMix64 generator
// seeded by hashing its keys (Rng::keyed: the run seed, a stream name's fnv1a, then the
// item: epoch, step, layer, image...). Host-side draws use it directly, with its own uniform,
// normal and Poisson transforms, so the numbers are the same on every platform, standard
// library and LibTorch version (std:: distributions are not); LibTorch's generator is seeded
// from it (derived_seed).
#pragma once

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>

namespace moelab {

// FNV-1a: a fixed string hash for seed keys (std::hash differs between standard libraries).
inline uint64_t fnv1a(const std::string& text) {
  uint64_t hash = 0xCBF29CE484222325ULL;
  for (unsigned char c : text) hash = (hash ^ c) * 0x100000001B3ULL;
  return hash;
}

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  // A generator for one item of a stream: seeded by hashing all the keys together.
  static Rng keyed(std::initializer_list<uint64_t> keys) {
    uint64_t state = 0x6A09E667F3BCC909ULL;
    for (uint64_t key : keys) {
      state ^= key + 0x9E3779B97F4A7C15ULL + (state << 6) + (state >> 2);
      state = mix(state);
    }
    return Rng(state);
  }

  uint64_t next() {
    state_ += 0x9E3779B97F4A7C15ULL;
    return mix(state_);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double uniform(double low, double high) { return low + (high - low) * uniform(); }
  // Integer in [0, n), n > 0 (Lemire's multiply-shift; bias < 2^-32 for our n).
  int64_t below(int64_t n) {
    return static_cast<int64_t>((static_cast<unsigned __int128>(next()) * static_cast<uint64_t>(n)) >> 64);
  }
  // Integer in [low, high] inclusive.
  int64_t between(int64_t low, int64_t high) { return low + below(high - low + 1); }
  double normal() {  // Box-Muller, one value per call
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  // Poisson(lambda): inversion by multiplication for small lambda, Hormann's PTRS otherwise.
  int64_t poisson(double lambda) {
    if (lambda <= 0) return 0;
    if (lambda < 10) {
      const double limit = std::exp(-lambda);
      double product = uniform();
      int64_t count = 0;
      while (product > limit) {
        product *= uniform();
        ++count;
      }
      return count;
    }
    const double slam = std::sqrt(lambda), loglam = std::log(lambda);
    const double b = 0.931 + 2.53 * slam, a = -0.059 + 0.02483 * b;
    const double inv_alpha = 1.1239 + 1.1328 / (b - 3.4), vr = 0.9277 - 3.6224 / (b - 2);
    while (true) {
      const double u = uniform() - 0.5, v = uniform();
      const double us = 0.5 - std::fabs(u);
      const double k = std::floor((2 * a / us + b) * u + lambda + 0.43);
      if (us >= 0.07 && v <= vr) return static_cast<int64_t>(k);
      if (k < 0 || (us < 0.013 && v > us)) continue;
      if (std::log(v) + std::log(inv_alpha) - std::log(a / (us * us) + b) <=
          -lambda + k * loglam - std::lgamma(k + 1)) {
        return static_cast<int64_t>(k);
      }
    }
  }

 private:
  static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  uint64_t state_;
};

// A seed for LibTorch's generator: the first draw of the keyed stream.
inline uint64_t derived_seed(std::initializer_list<uint64_t> keys) { return Rng::keyed(keys).next(); }

}  // namespace moelab
