// IDX: big-endian header (magic 0x00000803 images / 0x00000801 labels, then dimension sizes),
// followed by uint8 data. zlib's gzread reads both gzip and plain files.
#include "tasks/image/idx.h"

#include <fmt/format.h>
#include <zlib.h>

#include <memory>
#include <vector>

#include "harness/error.h"

namespace moelab {
namespace {

constexpr uint32_t kImageMagic = 0x00000803;
constexpr uint32_t kLabelMagic = 0x00000801;

class GzFile {
 public:
  explicit GzFile(const std::string& path) : path_(path), file_(gzopen(path.c_str(), "rb")) {
    if (file_ == nullptr) {
      throw Error(fmt::format("cannot open data file '{}' (is the dataset installed? run "
                              "harness/scripts/setup.sh)",
                              path));
    }
  }
  ~GzFile() { gzclose(file_); }
  GzFile(const GzFile&) = delete;
  GzFile& operator=(const GzFile&) = delete;

  void read_exact(void* out, size_t bytes, const char* what) {
    size_t done = 0;
    while (done < bytes) {
      const unsigned chunk = static_cast<unsigned>(std::min<size_t>(bytes - done, 1u << 30));
      const int got = gzread(file_, static_cast<char*>(out) + done, chunk);
      if (got < 0) {
        int code = 0;
        throw Error(fmt::format("'{}': read error in {}: {}", path_, what, gzerror(file_, &code)));
      }
      if (got == 0) {
        throw Error(fmt::format("'{}': file is truncated: {} ends after {} of {} bytes", path_,
                                what, done, bytes));
      }
      done += static_cast<size_t>(got);
    }
  }
  uint32_t read_u32(const char* what) {
    unsigned char b[4];
    read_exact(b, 4, what);
    return (uint32_t(b[0]) << 24) | (uint32_t(b[1]) << 16) | (uint32_t(b[2]) << 8) | b[3];
  }
  bool at_end() {
    char extra;
    return gzread(file_, &extra, 1) == 0;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  gzFile file_;
};

std::vector<int64_t> read_header(GzFile& file, uint32_t expected_magic, size_t dims) {
  const uint32_t magic = file.read_u32("the header");
  if (magic != expected_magic) {
    throw Error(fmt::format("'{}': wrong magic number 0x{:08x}, expected 0x{:08x} ({} file)",
                            file.path(), magic, expected_magic,
                            expected_magic == kImageMagic ? "IDX image" : "IDX label"));
  }
  std::vector<int64_t> shape;
  for (size_t i = 0; i < dims; ++i) {
    const uint32_t size = file.read_u32("the header");
    if (size == 0 || size > (1u << 28)) {
      throw Error(fmt::format("'{}': implausible dimension {} = {}", file.path(), i, size));
    }
    shape.push_back(size);
  }
  return shape;
}

torch::Tensor read_body(GzFile& file, const std::vector<int64_t>& shape) {
  auto data = torch::empty(shape, torch::kUInt8);
  file.read_exact(data.data_ptr<uint8_t>(), static_cast<size_t>(data.numel()), "the data");
  if (!file.at_end()) {
    throw Error(fmt::format("'{}': unexpected bytes after the {} declared values", file.path(),
                            data.numel()));
  }
  return data;
}

}  // namespace

torch::Tensor read_idx_images(const std::string& path) {
  GzFile file(path);
  return read_body(file, read_header(file, kImageMagic, 3));
}

torch::Tensor read_idx_labels(const std::string& path) {
  GzFile file(path);
  return read_body(file, read_header(file, kLabelMagic, 1)).to(torch::kLong);
}

}  // namespace moelab
