// Per-user cache of decompressed data files and checksums (see file_cache.h).
#include "harness/core/file_cache.h"

#include <fmt/format.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <vector>

#include "harness/core/sha256.h"

namespace moelab {
namespace {

namespace fs = std::filesystem;

// Smaller files are not cached: deriving from them costs about what a lookup saves, and
// short-lived ones (a test's temporary corpus) would only pile up.
constexpr uintmax_t kMinCachedBytes = uintmax_t{1} << 20;

// Where `kind` (derived data) of `source` lives in the cache, or nullopt (cache off, a small
// source, or one that cannot be stamped).
std::optional<fs::path> entry_path(const std::string& source, const std::string& kind) {
  const auto dir = cache_directory();
  const std::string stamp = file_stamp(source);
  if (!dir || stamp.empty()) return std::nullopt;
  std::error_code error;
  if (fs::file_size(source, error) < kMinCachedBytes || error) return std::nullopt;
  const fs::path absolute = fs::absolute(source, error);
  if (error) return std::nullopt;
  const std::string key = sha256_hex(absolute.string() + "\n" + stamp).substr(0, 24);
  return fs::path(*dir) / fmt::format("{}-{}.{}", key, absolute.filename().string(), kind);
}

// Writes an entry through a temporary file renamed into place; false (and nothing left
// behind) if any step fails.
bool write_entry(const fs::path& entry, const std::function<bool(std::ofstream&)>& write) {
  std::error_code error;
  fs::create_directories(entry.parent_path(), error);
  if (error) return false;
  static std::atomic<int64_t> written{0};  // unique per process and per call
  const fs::path temporary =
      entry.string() + fmt::format(".tmp{}-{}", static_cast<long>(getpid()), written++);
  bool ok = false;
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    ok = out && write(out);
    out.close();
    ok = ok && out;
  }
  if (ok) fs::rename(temporary, entry, error);
  if (!ok || error) {
    fs::remove(temporary, error);
    return false;
  }
  return true;
}

// Inflates a whole gzip file into `out`; false on any read error.
bool inflate_into(const std::string& path, std::ofstream& out) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) return false;
  std::vector<char> buffer(1 << 20);
  int got = 0;
  while ((got = gzread(file, buffer.data(), static_cast<unsigned>(buffer.size()))) > 0) {
    out.write(buffer.data(), got);
  }
  gzclose(file);
  return got == 0 && static_cast<bool>(out);
}

bool is_sha256_hex(const std::string& text) {
  return text.size() == 64 &&
         text.find_first_not_of("0123456789abcdef") == std::string::npos;
}

}  // namespace

bool is_gzip(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char magic[2] = {0, 0};
  in.read(reinterpret_cast<char*>(magic), 2);
  return in.gcount() == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
}

std::optional<std::string> cache_directory() {
  if (const char* dir = std::getenv("MOELAB_CACHE_DIR"); dir != nullptr && *dir != '\0') {
    if (std::string(dir) == "off") return std::nullopt;
    return std::string(dir);
  }
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != '\0') {
    return std::string(xdg) + "/moelab";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return std::string(home) + "/.cache/moelab";
  }
  return std::nullopt;
}

std::string decompressed_path(const std::string& path) {
  if (!is_gzip(path)) return path;
  const auto entry = entry_path(path, "raw");
  if (!entry) return path;
  std::error_code error;
  if (fs::exists(*entry, error)) return entry->string();
  // A broken source is left for its reader to report, under its own name.
  const bool written = write_entry(*entry, [&](std::ofstream& out) { return inflate_into(path, out); });
  return written ? entry->string() : path;
}

std::string file_sha256(const std::string& path) {
  static std::mutex mutex;
  static std::map<std::string, std::pair<std::string, std::string>> known;  // path -> (stamp, hash)
  const std::string stamp = file_stamp(path);
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto found = known.find(path);
    if (!stamp.empty() && found != known.end() && found->second.first == stamp) {
      return found->second.second;
    }
  }
  std::string hash;
  const auto entry = entry_path(path, "sha256");
  if (entry) std::getline(std::ifstream(*entry), hash);
  if (!is_sha256_hex(hash)) {
    hash = sha256_file_hex(path);
    if (entry) write_entry(*entry, [&](std::ofstream& out) { return static_cast<bool>(out << hash << "\n"); });
  }
  std::lock_guard<std::mutex> lock(mutex);
  if (!stamp.empty()) known[path] = {stamp, hash};
  return hash;
}

}  // namespace moelab
