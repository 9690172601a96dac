// SHA-256 through nettle (Debian's nettle-dev): config hashes and data-file checksums.
#include "harness/core/sha256.h"

#include <nettle/sha2.h>

#include <filesystem>
#include <fstream>
#include <vector>

#include "harness/core/error.h"

namespace moelab {
namespace {

class Sha256 {
 public:
  Sha256() { sha256_init(&context_); }
  void update(const char* data, size_t size) {
    sha256_update(&context_, size, reinterpret_cast<const uint8_t*>(data));
  }
  std::string hex_digest() {
    uint8_t digest[SHA256_DIGEST_SIZE];
    sha256_digest(&context_, SHA256_DIGEST_SIZE, digest);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string hex;
    for (uint8_t byte : digest) {
      hex += kHex[byte >> 4];
      hex += kHex[byte & 15];
    }
    return hex;
  }

 private:
  sha256_ctx context_;
};

}  // namespace

std::string sha256_hex(std::string_view data) {
  Sha256 hasher;
  hasher.update(data.data(), data.size());
  return hasher.hex_digest();
}

std::string sha256_file_hex(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read '" + path + "' to checksum it");
  Sha256 hasher;
  std::vector<char> buffer(1 << 16);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    hasher.update(buffer.data(), static_cast<size_t>(in.gcount()));
  }
  return hasher.hex_digest();
}

std::string file_stamp(const std::string& path) {
  std::error_code error;
  const auto size = std::filesystem::file_size(path, error);
  if (error) return "";
  const auto time = std::filesystem::last_write_time(path, error).time_since_epoch().count();
  return error ? "" : std::to_string(size) + ":" + std::to_string(time);
}

}  // namespace moelab
