// Data: IDX reader on good, truncated and wrong files (gzip and memory-mapped plain); the
// per-user file cache; the real Fashion-MNIST files; the seeded epoch sampler.
#include <zlib.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <random>
#include <set>
#include <sstream>

#include "harness/core/file_cache.h"
#include "harness/core/sampler.h"
#include "harness/core/sha256.h"
#include "tasks/image/idx.h"
#include "test_util.h"

namespace moelab {
namespace {

std::string idx_bytes(uint32_t magic, std::vector<uint32_t> dims, size_t data_bytes) {
  std::string out;
  auto put = [&](uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
  };
  put(magic);
  for (auto d : dims) put(d);
  for (size_t i = 0; i < data_bytes; ++i) out.push_back(static_cast<char>(i % 251));
  return out;
}

// An IDX file of random values: incompressible, so its gzip file is as large.
std::string random_idx(uint32_t magic, std::vector<uint32_t> dims, uint32_t seed) {
  size_t count = 1;
  for (auto d : dims) count *= d;
  std::string out = idx_bytes(magic, dims, 0);
  std::mt19937 random(seed);
  for (size_t i = 0; i < count; ++i) out.push_back(static_cast<char>(random() & 0xff));
  return out;
}

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile file = gzopen(path.c_str(), "wb");
  REQUIRE(file != nullptr);
  REQUIRE(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())) ==
          static_cast<int>(bytes.size()));
  gzclose(file);
}

}  // namespace

TEST_CASE("IDX images and labels are read from gzip and plain files", "[data]") {
  testing::TempDir dir;
  write_gz(dir.file("img.gz"), idx_bytes(0x803, {3, 2, 4}, 24));
  auto images = read_idx_images(dir.file("img.gz"));
  CHECK(images.sizes() == torch::IntArrayRef({3, 2, 4}));
  CHECK(images[2][1][3].item<int>() == 23);

  std::ofstream(dir.file("lab"), std::ios::binary) << idx_bytes(0x801, {5}, 5);
  auto labels = read_idx_labels(dir.file("lab"));
  CHECK(labels.scalar_type() == torch::kLong);
  CHECK(testing::as_vector(labels) == std::vector<int64_t>{0, 1, 2, 3, 4});
}

TEST_CASE("broken IDX files give clear errors", "[data]") {
  testing::TempDir dir;
  using Catch::Matchers::Contains;
  write_gz(dir.file("truncated.gz"), idx_bytes(0x803, {3, 2, 4}, 20));
  CHECK_THROWS_WITH(read_idx_images(dir.file("truncated.gz")), Contains("truncated"));
  write_gz(dir.file("magic.gz"), idx_bytes(0x801, {3}, 3));
  CHECK_THROWS_WITH(read_idx_images(dir.file("magic.gz")), Contains("wrong magic number"));
  write_gz(dir.file("long.gz"), idx_bytes(0x801, {3}, 4));
  CHECK_THROWS_WITH(read_idx_labels(dir.file("long.gz")), Contains("unexpected bytes"));
  CHECK_THROWS_WITH(read_idx_labels(dir.file("missing.gz")), Contains("cannot open"));
  write_gz(dir.file("header.gz"), std::string("\0\0\x08", 3));
  CHECK_THROWS_WITH(read_idx_labels(dir.file("header.gz")), Contains("truncated"));

  // Plain files take the memory-mapped path: the same checks, the same messages.
  auto write_plain = [&](const std::string& name, const std::string& bytes) {
    std::ofstream(dir.file(name), std::ios::binary) << bytes;
    return dir.file(name);
  };
  CHECK_THROWS_WITH(read_idx_images(write_plain("truncated", idx_bytes(0x803, {3, 2, 4}, 20))),
                    Contains("truncated"));
  CHECK_THROWS_WITH(read_idx_images(write_plain("magic", idx_bytes(0x801, {3}, 3))),
                    Contains("wrong magic number"));
  CHECK_THROWS_WITH(read_idx_labels(write_plain("long", idx_bytes(0x801, {3}, 4))),
                    Contains("unexpected bytes"));
  CHECK_THROWS_WITH(read_idx_labels(write_plain("empty", "")), Contains("truncated"));
  CHECK_THROWS_WITH(read_idx_labels(dir.file("missing")), Contains("cannot open"));
}

TEST_CASE("a memory-mapped IDX tensor outlives its reader and is private to the process", "[data]") {
  testing::TempDir dir;
  std::ofstream(dir.file("img"), std::ios::binary) << idx_bytes(0x803, {2, 2, 2}, 8);
  auto images = read_idx_images(dir.file("img"));
  auto again = read_idx_images(dir.file("img"));
  images[0][0][0] = 200;  // copy-on-write: neither the file nor another mapping changes
  CHECK(again[0][0][0].item<int>() == 0);
  CHECK(read_idx_images(dir.file("img"))[0][0][0].item<int>() == 0);
  CHECK(images[1][1][1].item<int>() == 7);
}

namespace {

// Points the file cache at a directory (or "off") for one test.
class CacheDirGuard {
 public:
  explicit CacheDirGuard(const std::string& dir) {
    if (const char* old = std::getenv("MOELAB_CACHE_DIR")) previous_ = old;
    setenv("MOELAB_CACHE_DIR", dir.c_str(), 1);
  }
  ~CacheDirGuard() {
    if (previous_) {
      setenv("MOELAB_CACHE_DIR", previous_->c_str(), 1);
    } else {
      unsetenv("MOELAB_CACHE_DIR");
    }
  }

 private:
  std::optional<std::string> previous_;
};

std::string file_contents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

size_t files_in(const std::string& dir) {
  if (!std::filesystem::exists(dir)) return 0;
  return static_cast<size_t>(std::distance(std::filesystem::directory_iterator(dir),
                                           std::filesystem::directory_iterator()));
}

}  // namespace

TEST_CASE("the file cache keeps one decompressed copy per source version", "[data]") {
  testing::TempDir dir;
  CacheDirGuard guard(dir.file("cache"));
  // Random pixels, so that the gzip file too is over the 1 MiB below which nothing is cached.
  const std::string source = dir.file("img.gz"), first = random_idx(0x803, {1100, 32, 32}, 1);
  write_gz(source, first);
  const std::string copy = decompressed_path(source);
  CHECK(copy.rfind(dir.file("cache"), 0) == 0);
  CHECK(file_contents(copy) == first);
  CHECK(decompressed_path(source) == copy);  // reused
  CHECK(read_idx_images(copy).equal(read_idx_images(source)));

  const std::string second = random_idx(0x803, {1200, 32, 32}, 2);  // a new version of the file
  write_gz(source, second);
  const std::string new_copy = decompressed_path(source);
  CHECK(new_copy != copy);
  CHECK(file_contents(new_copy) == second);

  write_gz(dir.file("small.gz"), idx_bytes(0x803, {3, 2, 4}, 24));
  CHECK(decompressed_path(dir.file("small.gz")) == dir.file("small.gz"));  // under 1 MiB
  std::ofstream(dir.file("plain"), std::ios::binary) << first;
  CHECK(decompressed_path(dir.file("plain")) == dir.file("plain"));  // not gzip: itself
  std::ofstream(dir.file("broken.gz"), std::ios::binary)
      << std::string("\x1f\x8b\x08", 3) << first;  // a gzip header, then no deflate stream
  CHECK(decompressed_path(dir.file("broken.gz")) == dir.file("broken.gz"));  // its reader reports
  CHECK(files_in(dir.file("cache")) == 2);  // no entry or temporary file for the others
}

TEST_CASE("the file cache is optional: off, or not writable, it only costs time", "[data]") {
  testing::TempDir dir;
  const std::string source = dir.file("img.gz");
  write_gz(source, random_idx(0x803, {1100, 32, 32}, 3));
  {
    CacheDirGuard guard("off");
    CHECK_FALSE(cache_directory().has_value());
    CHECK(decompressed_path(source) == source);
    CHECK(file_sha256(source) == sha256_file_hex(source));
  }
  std::ofstream(dir.file("a-file")) << "not a directory";
  CacheDirGuard guard(dir.file("a-file") + "/cache");
  CHECK(decompressed_path(source) == source);
  CHECK(file_sha256(source) == sha256_file_hex(source));
}

TEST_CASE("cached checksums follow the file", "[data]") {
  testing::TempDir dir;
  CacheDirGuard guard(dir.file("cache"));
  const std::string path = dir.file("data.bin");
  std::ofstream(path, std::ios::binary) << random_idx(0x803, {1100, 32, 32}, 4);
  CHECK(file_sha256(path) == sha256_file_hex(path));
  CHECK(files_in(dir.file("cache")) == 1);
  const std::string second = random_idx(0x803, {1200, 32, 32}, 5);
  std::ofstream(path, std::ios::binary) << second;
  CHECK(file_sha256(path) == sha256_hex(second));
  CHECK(files_in(dir.file("cache")) == 2);
  std::ofstream(dir.file("small.bin"), std::ios::binary) << "under 1 MiB";
  CHECK(file_sha256(dir.file("small.bin")) == sha256_hex("under 1 MiB"));
  CHECK(files_in(dir.file("cache")) == 2);  // not cached
  CHECK_THROWS_AS(file_sha256(dir.file("missing")), Error);
}

TEST_CASE("the installed Fashion-MNIST matches the published facts", "[data]") {
  const std::string dir = testing::fashion_mnist_dir();
  auto test_labels = read_idx_labels(dir + "/t10k-labels-idx1-ubyte.gz");
  auto test_images = read_idx_images(dir + "/t10k-images-idx3-ubyte.gz");
  CHECK(test_images.sizes() == torch::IntArrayRef({10000, 28, 28}));
  CHECK(testing::as_vector(test_labels.narrow(0, 0, 8)) ==
        std::vector<int64_t>{9, 2, 1, 1, 6, 1, 4, 6});
  CHECK(testing::as_vector(torch::bincount(test_labels)) == std::vector<int64_t>(10, 1000));
}

TEST_CASE("the epoch sampler is a seeded permutation per epoch", "[data]") {
  EpochSampler a(10, 42), b(10, 42), c(10, 43);
  std::vector<int64_t> epoch0, epoch0_again;
  for (int step = 0; step < 5; ++step) {
    auto batch = a.batch(step, 2);
    epoch0.insert(epoch0.end(), batch.begin(), batch.end());
  }
  CHECK(std::set<int64_t>(epoch0.begin(), epoch0.end()).size() == 10);  // each example once
  for (int step = 0; step < 5; ++step) {
    auto batch = b.batch(step, 2);
    epoch0_again.insert(epoch0_again.end(), batch.begin(), batch.end());
  }
  CHECK(epoch0 == epoch0_again);            // same seed, same order
  CHECK(c.batch(0, 10) != a.batch(0, 10));  // another seed, another order
  CHECK(a.batch(5, 10) != a.batch(0, 10));  // a new epoch is reshuffled
  CHECK(b.batch(7, 3) == EpochSampler(10, 42).batch(7, 3));  // any step, no history needed
}

}  // namespace moelab
