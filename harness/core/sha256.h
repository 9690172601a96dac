// SHA-256 (FIPS 180-4) for run identities (config hashes) and data-file checksums.
#pragma once

#include <string>
#include <string_view>

namespace moelab {

std::string sha256_hex(std::string_view data);
std::string sha256_file_hex(const std::string& path);  // throws Error if unreadable

// "size:modification time" of a file, or "" if it cannot be read: the cheap identity under
// which a process caches what it derived from the file (its hash, its decoded contents).
std::string file_stamp(const std::string& path);

}  // namespace moelab
