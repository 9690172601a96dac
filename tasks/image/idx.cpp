// IDX: big-endian header (magic 0x00000803 images / 0x00000801 labels, then dimension sizes),
// followed by uint8 data. gzip files are inflated with zlib; plain files are memory-mapped, so
// processes reading the same file share its pages and touch only the images they use.
#include "tasks/image/idx.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <memory>
#include <vector>

#include "harness/core/error.h"
#include "harness/core/file_cache.h"

namespace moelab {
namespace {

constexpr uint32_t kImageMagic = 0x00000803;
constexpr uint32_t kLabelMagic = 0x00000801;

Error missing_file(const std::string& path) {
  return Error(fmt::format(
      "cannot open data file '{}' (is the dataset installed? run harness/scripts/setup.sh)", path));
}

// A big-endian uint32 from either kind of file below.
template <typename File>
uint32_t read_u32(File& file, const char* what) {
  unsigned char b[4];
  file.read_exact(b, 4, what);
  return (uint32_t(b[0]) << 24) | (uint32_t(b[1]) << 16) | (uint32_t(b[2]) << 8) | b[3];
}

class GzFile {
 public:
  explicit GzFile(const std::string& path) : path_(path), file_(gzopen(path.c_str(), "rb")) {
    if (file_ == nullptr) {
      throw missing_file(path);
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
  bool at_end() {
    char extra;
    return gzread(file_, &extra, 1) == 0;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  gzFile file_;
};

// A plain file mapped copy-on-write: reading shares the page cache, an accidental write
// stays private to the process.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) : path_(path) {
    const int fd = open(path.c_str(), O_RDONLY);
    if (fd < 0) {
      throw missing_file(path);
    }
    struct stat info {};
    void* data = MAP_FAILED;
    if (fstat(fd, &info) == 0 && info.st_size > 0) {
      size_ = static_cast<size_t>(info.st_size);
      data = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    }
    close(fd);
    if (data == MAP_FAILED) size_ = 0;
    const size_t size = size_;
    mapping_ = std::shared_ptr<unsigned char>(
        data == MAP_FAILED ? nullptr : static_cast<unsigned char*>(data),
        [size](unsigned char* p) { if (p != nullptr) munmap(p, size); });
  }

  void read_exact(void* out, size_t bytes, const char* what) {
    const size_t available = size_ - std::min(size_, offset_);
    if (available < bytes) {
      throw Error(fmt::format("'{}': file is truncated: {} ends after {} of {} bytes", path_,
                              what, available, bytes));
    }
    std::memcpy(out, mapping_.get() + offset_, bytes);
    offset_ += bytes;
  }
  const std::string& path() const { return path_; }

  // The rest of the file as a 1-d uint8 tensor, without copying (it keeps the mapping alive).
  torch::Tensor rest() {
    return body({static_cast<int64_t>(size_ - std::min(size_, offset_))});
  }

  // The rest of the file as a uint8 tensor of `shape`, without copying (it keeps the
  // mapping alive).
  torch::Tensor body(const std::vector<int64_t>& shape) {
    int64_t count = 1;
    for (const int64_t size : shape) count *= size;
    const size_t available = size_ - std::min(size_, offset_);
    if (available < static_cast<size_t>(count)) {
      throw Error(fmt::format("'{}': file is truncated: the data ends after {} of {} bytes",
                              path_, available, count));
    }
    if (available > static_cast<size_t>(count)) {
      throw Error(fmt::format("'{}': unexpected bytes after the {} declared values", path_, count));
    }
    auto keep = mapping_;
    return torch::from_blob(mapping_.get() + offset_, shape, [keep](void*) {}, torch::kUInt8);
  }

 private:
  std::string path_;
  std::shared_ptr<unsigned char> mapping_;
  size_t size_ = 0;
  size_t offset_ = 0;
};

template <typename File>
std::vector<int64_t> read_header(File& file, uint32_t expected_magic, size_t dims) {
  const uint32_t magic = read_u32(file, "the header");
  if (magic != expected_magic) {
    throw Error(fmt::format("'{}': wrong magic number 0x{:08x}, expected 0x{:08x} ({} file)",
                            file.path(), magic, expected_magic,
                            expected_magic == kImageMagic ? "IDX image" : "IDX label"));
  }
  std::vector<int64_t> shape;
  for (size_t i = 0; i < dims; ++i) {
    const uint32_t size = read_u32(file, "the header");
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

torch::Tensor read_idx(const std::string& path, uint32_t magic, size_t dims) {
  if (is_gzip(path)) {
    GzFile file(path);
    return read_body(file, read_header(file, magic, dims));
  }
  MappedFile file(path);
  return file.body(read_header(file, magic, dims));
}

}  // namespace

torch::Tensor read_idx_images(const std::string& path) { return read_idx(path, kImageMagic, 3); }

std::vector<int64_t> read_idx_image_shape(const std::string& path) {
  if (is_gzip(path)) {
    GzFile file(path);
    return read_header(file, kImageMagic, 3);
  }
  MappedFile file(path);
  return read_header(file, kImageMagic, 3);
}

torch::Tensor map_file_bytes(const std::string& path) {
  MappedFile file(path);
  return file.rest();
}

torch::Tensor read_idx_labels(const std::string& path) {
  return read_idx(path, kLabelMagic, 1).to(torch::kLong);
}

}  // namespace moelab
