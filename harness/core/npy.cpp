// .npy: magic "\x93NUMPY", version bytes, little-endian header length (2 bytes in v1, 4 in
// v2/v3), a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (T, E), }
// padded with spaces, then the raw data.
#include "harness/core/npy.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <regex>
#include <sstream>

#include "harness/core/error.h"
#include "harness/core/parse.h"

namespace moelab {
namespace {

std::string dict_value(const std::string& header, const std::string& key, const std::string& path) {
  const std::regex pattern("'" + key + "'\\s*:\\s*('[^']*'|True|False|\\([^)]*\\))");
  std::smatch match;
  if (!std::regex_search(header, match, pattern)) {
    throw ConfigError(fmt::format("'{}': .npy header has no '{}' entry", path, key));
  }
  return match[1];
}

// "(4, 3)" -> {4, 3}: every dimension a non-negative integer, 2^31 elements at most (8 GiB
// of float32: more is a corrupt header, not router logits).
std::vector<int64_t> parse_shape(const std::string& text, const std::string& path) {
  constexpr int64_t kMaxElements = int64_t{1} << 31;
  std::vector<int64_t> shape;
  int64_t elements = 1;
  std::stringstream items(text.substr(1, text.size() - 2));  // without the parentheses
  for (std::string item; std::getline(items, item, ',');) {
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (item.empty()) continue;  // the trailing comma of a 1-tuple
    const auto value = parse_int64(item);
    if (!value || *value < 0) {
      throw ConfigError(fmt::format("'{}': .npy shape {} has the dimension '{}', not a "
                                    "non-negative integer", path, text, item));
    }
    if (*value > 0 && elements > kMaxElements / *value) {
      throw ConfigError(fmt::format("'{}': .npy shape {} has more than 2^31 elements", path, text));
    }
    elements *= *value;
    shape.push_back(*value);
  }
  return shape;
}

struct NpyDtype {
  const char* code;
  torch::ScalarType type;
};
const std::array<NpyDtype, 7> kDtypes = {{{"u1", torch::kUInt8},
                                          {"i1", torch::kInt8},
                                          {"i2", torch::kInt16},
                                          {"i4", torch::kInt32},
                                          {"i8", torch::kInt64},
                                          {"f4", torch::kFloat},
                                          {"f8", torch::kDouble}}};

}  // namespace

NpyHeader read_npy_header(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(fmt::format("cannot open .npy file '{}'", path));
  char magic[8] = {};
  in.read(magic, 8);
  if (!in || std::string(magic, 6) != "\x93NUMPY") {
    throw ConfigError(fmt::format("'{}' is not a .npy file (bad magic)", path));
  }
  const int major = static_cast<unsigned char>(magic[6]);
  uint32_t header_length = 0;
  unsigned char length_bytes[4] = {};
  in.read(reinterpret_cast<char*>(length_bytes), major == 1 ? 2 : 4);
  for (int i = (major == 1 ? 1 : 3); i >= 0; --i) header_length = header_length * 256 + length_bytes[i];
  std::string header(header_length, '\0');
  in.read(header.data(), header_length);
  if (!in) throw ConfigError(fmt::format("'{}': truncated .npy header", path));

  NpyHeader result;
  const std::string descr = dict_value(header, "descr", path);
  const auto found = std::find_if(kDtypes.begin(), kDtypes.end(), [&](const NpyDtype& dtype) {
    return descr == fmt::format("'<{}'", dtype.code) || descr == fmt::format("'|{}'", dtype.code) ||
           descr == fmt::format("'={}'", dtype.code);
  });
  if (found == kDtypes.end()) {
    throw ConfigError(fmt::format("'{}': dtype {} is not supported (little-endian u1, i1, i2, "
                                  "i4, i8, f4 or f8)",
                                  path, descr));
  }
  result.dtype = found->type;
  if (dict_value(header, "fortran_order", path) != "False") {
    throw ConfigError(fmt::format("'{}': Fortran-order arrays are not supported; save "
                                  "np.ascontiguousarray(x)",
                                  path));
  }
  result.shape = parse_shape(dict_value(header, "shape", path), path);
  result.data_offset = static_cast<int64_t>(in.tellg());
  return result;
}

torch::Tensor read_npy_rows(const std::string& path, int64_t first, int64_t count) {
  const NpyHeader header = read_npy_header(path);
  if (header.shape.empty()) throw ConfigError(fmt::format("'{}': a 0-d .npy array has no rows", path));
  const int64_t rows = header.shape[0];
  if (first < 0 || count < 0 || first + count > rows) {
    throw ConfigError(fmt::format("'{}': rows {}..{} asked of an array of {} rows", path, first,
                                  first + count, rows));
  }
  std::vector<int64_t> shape = header.shape;
  shape[0] = count;
  auto tensor = torch::empty(shape, header.dtype);
  int64_t row_bytes = static_cast<int64_t>(c10::elementSize(header.dtype));
  for (size_t d = 1; d < shape.size(); ++d) row_bytes *= shape[d];
  std::ifstream in(path, std::ios::binary);
  in.seekg(header.data_offset + first * row_bytes);
  const auto bytes = static_cast<std::streamsize>(tensor.nbytes());
  in.read(static_cast<char*>(tensor.data_ptr()), bytes);
  if (in.gcount() != bytes) {
    throw ConfigError(fmt::format("'{}': truncated .npy data (rows {}..{} of {} need {} bytes "
                                  "from offset {}; {} read)",
                                  path, first, first + count, rows, bytes,
                                  header.data_offset + first * row_bytes, in.gcount()));
  }
  return tensor;
}

torch::Tensor read_npy_float32(const std::string& path) {
  const NpyHeader header = read_npy_header(path);
  if (header.dtype != torch::kFloat) {
    throw ConfigError(fmt::format("'{}': dtype is not little-endian float32 ('<f4'); save with "
                                  "np.asarray(x, dtype=np.float32)",
                                  path));
  }
  return read_npy_rows(path, 0, header.shape.empty() ? 0 : header.shape[0]);
}

void write_npy(const std::string& path, const torch::Tensor& tensor) {
  auto data = tensor.detach().to(torch::kCPU).contiguous();
  const auto found = std::find_if(kDtypes.begin(), kDtypes.end(),
                                  [&](const NpyDtype& dtype) { return dtype.type == data.scalar_type(); });
  MOELAB_CHECK(found != kDtypes.end(), "write_npy('{}'): unsupported dtype {}", path,
               c10::toString(data.scalar_type()));
  std::string shape;
  for (int64_t d : data.sizes()) shape += std::to_string(d) + ", ";
  if (data.dim() > 1) shape.erase(shape.size() - 2);
  else if (data.dim() == 1) shape.erase(shape.size() - 1);
  std::string header = fmt::format("{{'descr': '{}{}', 'fortran_order': False, 'shape': ({}), }}",
                                   data.element_size() == 1 ? '|' : '<', found->code, shape);
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  if (!out) throw Error(fmt::format("cannot write '{}'", path));
  out.write("\x93NUMPY\x01\x00", 8);
  const auto length = static_cast<uint16_t>(header.size());
  const char length_bytes[2] = {static_cast<char>(length & 0xff), static_cast<char>(length >> 8)};
  out.write(length_bytes, 2);
  out << header;
  out.write(static_cast<const char*>(data.data_ptr()), static_cast<std::streamsize>(data.nbytes()));
  out.flush();
  if (!out) throw Error(fmt::format("cannot write '{}' (disk full?)", path));
}

void write_npy_float32(const std::string& path, const torch::Tensor& tensor) {
  write_npy(path, tensor.to(torch::kFloat));
}

}  // namespace moelab
