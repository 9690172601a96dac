// Data: IDX reader on good, truncated and wrong files; the real Fashion-MNIST files;
// the seeded epoch sampler.
#include <zlib.h>

#include <fstream>
#include <set>

#include "harness/sampler.h"
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
