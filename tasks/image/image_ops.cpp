// Image primitives for the corruptions.
#include "tasks/image/image_ops.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "harness/core/error.h"

namespace moelab {
namespace {

constexpr double kPi = 3.14159265358979323846;

std::vector<double> gaussian_kernel_1d(double sigma, double truncate) {
  const auto radius = static_cast<int64_t>(truncate * sigma + 0.5);
  std::vector<double> kernel(static_cast<size_t>(2 * radius + 1));
  double sum = 0.0;
  for (int64_t i = -radius; i <= radius; ++i) {
    const double w = std::exp(-0.5 * static_cast<double>(i * i) / (sigma * sigma));
    kernel[static_cast<size_t>(i + radius)] = w;
    sum += w;
  }
  for (auto& w : kernel) w /= sum;
  return kernel;
}

float value_at(const Image& image, int64_t r, int64_t c, Border border) {
  const int64_t rr = border_index(r, image.rows, border), cc = border_index(c, image.cols, border);
  return rr < 0 || cc < 0 ? 0.f : image.at(rr, cc);
}

// One pass of a 1-D correlation along rows (axis 0) or columns (axis 1).
Image correlate_1d(const Image& image, const std::vector<double>& kernel, int axis, Border border) {
  const auto radius = static_cast<int64_t>(kernel.size() / 2);
  Image out(image.rows, image.cols);
  for (int64_t r = 0; r < image.rows; ++r) {
    for (int64_t c = 0; c < image.cols; ++c) {
      double sum = 0.0;
      for (int64_t k = -radius; k <= radius; ++k) {
        const float v = axis == 0 ? value_at(image, r + k, c, border) : value_at(image, r, c + k, border);
        sum += kernel[static_cast<size_t>(k + radius)] * v;
      }
      out.at(r, c) = static_cast<float>(sum);
    }
  }
  return out;
}

// PIL's box-filter resampling coefficients for one axis: for every output index, the first
// input index and the normalised weights.
struct Coefficients {
  std::vector<int64_t> first;
  std::vector<std::vector<double>> weights;
};
Coefficients box_coefficients(int64_t in, int64_t out) {
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  const double filter_scale = std::max(scale, 1.0);
  const double support = 0.5 * filter_scale;
  Coefficients coefficients;
  for (int64_t o = 0; o < out; ++o) {
    const double centre = (static_cast<double>(o) + 0.5) * scale;
    const int64_t low = std::max<int64_t>(0, static_cast<int64_t>(centre - support + 0.5));
    const int64_t high = std::min<int64_t>(in, static_cast<int64_t>(centre + support + 0.5));
    std::vector<double> weights;
    double total = 0.0;
    for (int64_t i = low; i < high; ++i) {
      const double x = (static_cast<double>(i) - centre + 0.5) / filter_scale;
      const double w = (x >= -0.5 && x < 0.5) ? 1.0 : 0.0;
      weights.push_back(w);
      total += w;
    }
    for (auto& w : weights) w = total > 0 ? w / total : 0.0;
    coefficients.first.push_back(low);
    coefficients.weights.push_back(std::move(weights));
  }
  return coefficients;
}

// 8x8 DCT-II basis as JPEG uses it: basis[u][x] = C(u)/2 cos((2x+1) u pi / 16).
const std::array<std::array<double, 8>, 8>& dct_basis() {
  static const auto basis = [] {
    std::array<std::array<double, 8>, 8> b{};
    for (int u = 0; u < 8; ++u) {
      for (int x = 0; x < 8; ++x) {
        b[u][x] = (u == 0 ? std::sqrt(0.5) : 1.0) / 2.0 * std::cos((2 * x + 1) * u * kPi / 16.0);
      }
    }
    return b;
  }();
  return basis;
}

// The standard luminance quantisation table (ITU T.81 Annex K), scaled as libjpeg's
// jpeg_set_quality does with force_baseline.
std::array<int, 64> quantisation_table(int64_t quality) {
  static const int kLuminance[64] = {
      16, 11, 10, 16, 24,  40,  51,  61,  12, 12, 14, 19, 26,  58,  60,  55,
      14, 13, 16, 24, 40,  57,  69,  56,  14, 17, 22, 29, 51,  87,  80,  62,
      18, 22, 37, 56, 68,  109, 103, 77,  24, 35, 55, 64, 81,  104, 113, 92,
      49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99};
  quality = std::clamp<int64_t>(quality, 1, 100);
  const int64_t scale = quality < 50 ? 5000 / quality : 200 - 2 * quality;
  std::array<int, 64> table{};
  for (int i = 0; i < 64; ++i) {
    table[i] = static_cast<int>(std::clamp<int64_t>((kLuminance[i] * scale + 50) / 100, 1, 255));
  }
  return table;
}

}  // namespace

int64_t border_index(int64_t i, int64_t n, Border border) {
  if (i >= 0 && i < n) return i;
  switch (border) {
    case Border::kZero: return -1;
    case Border::kNearest: return std::clamp<int64_t>(i, 0, n - 1);
    case Border::kReflect: {
      const int64_t period = 2 * n;
      int64_t m = ((i % period) + period) % period;
      return m < n ? m : period - 1 - m;
    }
    case Border::kMirror: {
      if (n == 1) return 0;
      const int64_t period = 2 * n - 2;
      int64_t m = ((i % period) + period) % period;
      return m < n ? m : period - m;
    }
  }
  return -1;
}

void clip01(Image& image) {
  for (auto& v : image.px) v = std::clamp(v, 0.f, 1.f);
}

Image gaussian_filter(const Image& image, double sigma, Border border, double truncate) {
  if (sigma <= 0) return image;
  const auto kernel = gaussian_kernel_1d(sigma, truncate);
  return correlate_1d(correlate_1d(image, kernel, 0, border), kernel, 1, border);
}

Image correlate(const Image& image, const std::vector<double>& kernel, int64_t size, Border border) {
  const int64_t radius = size / 2;
  Image out(image.rows, image.cols);
  for (int64_t r = 0; r < image.rows; ++r) {
    for (int64_t c = 0; c < image.cols; ++c) {
      double sum = 0.0;
      for (int64_t i = 0; i < size; ++i) {
        for (int64_t j = 0; j < size; ++j) {
          sum += kernel[static_cast<size_t>(i * size + j)] *
                 value_at(image, r + i - radius, c + j - radius, border);
        }
      }
      out.at(r, c) = static_cast<float>(sum);
    }
  }
  return out;
}

float bilinear(const Image& image, double row, double col, Border border) {
  const double r0 = std::floor(row), c0 = std::floor(col);
  const double fr = row - r0, fc = col - c0;
  const auto r = static_cast<int64_t>(r0), c = static_cast<int64_t>(c0);
  const double top = (1 - fc) * value_at(image, r, c, border) + fc * value_at(image, r, c + 1, border);
  const double bottom =
      (1 - fc) * value_at(image, r + 1, c, border) + fc * value_at(image, r + 1, c + 1, border);
  return static_cast<float>((1 - fr) * top + fr * bottom);
}

Image warp_affine(const Image& image, const double m[6], Border border) {
  Image out(image.rows, image.cols);
  for (int64_t r = 0; r < image.rows; ++r) {
    for (int64_t c = 0; c < image.cols; ++c) {
      const double x = m[0] * c + m[1] * r + m[2];  // input column
      const double y = m[3] * c + m[4] * r + m[5];  // input row
      out.at(r, c) = bilinear(image, y, x, border);
    }
  }
  return out;
}

Image clipped_zoom(const Image& image, double factor) {
  const auto crop = static_cast<int64_t>(std::ceil(static_cast<double>(image.rows) / factor));
  const int64_t top = (image.rows - crop) / 2;
  const auto zoomed = static_cast<int64_t>(std::llround(static_cast<double>(crop) * factor));
  const int64_t trim = (zoomed - image.rows) / 2;
  const double step = zoomed > 1 ? static_cast<double>(crop - 1) / static_cast<double>(zoomed - 1) : 0.0;
  Image out(image.rows, image.cols);
  for (int64_t r = 0; r < image.rows; ++r) {
    for (int64_t c = 0; c < image.cols; ++c) {
      const double source_row = top + static_cast<double>(r + trim) * step;
      const double source_col = top + static_cast<double>(c + trim) * step;
      out.at(r, c) = bilinear(image, source_row, source_col, Border::kNearest);
    }
  }
  return out;
}

Image motion_blur(const Image& image, int64_t radius, double sigma, double angle_degrees) {
  const int64_t width = 2 * radius + 1;
  std::vector<double> kernel(static_cast<size_t>(width));
  double total = 0.0;
  for (int64_t i = 0; i < width; ++i) {
    kernel[static_cast<size_t>(i)] = std::exp(-static_cast<double>(i * i) / (2 * sigma * sigma));
    total += kernel[static_cast<size_t>(i)];
  }
  const double angle = angle_degrees * kPi / 180.0;
  Image out(image.rows, image.cols);
  for (int64_t i = 0; i < width; ++i) {
    const auto dy = -static_cast<int64_t>(std::ceil(static_cast<double>(i) * std::sin(angle) - 0.5));
    const auto dx = -static_cast<int64_t>(std::ceil(static_cast<double>(i) * std::cos(angle) - 0.5));
    if (std::abs(dy) >= image.rows || std::abs(dx) >= image.cols) break;
    const double w = kernel[static_cast<size_t>(i)] / total;
    for (int64_t r = 0; r < image.rows; ++r) {
      for (int64_t c = 0; c < image.cols; ++c) {
        out.at(r, c) += static_cast<float>(w * value_at(image, r - dy, c - dx, Border::kNearest));
      }
    }
  }
  return out;
}

std::vector<double> plasma_fractal(int64_t mapsize, double wibble_decay, Rng& rng) {
  MOELAB_CHECK(mapsize > 1 && (mapsize & (mapsize - 1)) == 0, "plasma map size {} is not a power of 2",
               mapsize);
  const int64_t n = mapsize;
  std::vector<double> map(static_cast<size_t>(n * n), 0.0);
  auto at = [&](int64_t r, int64_t c) -> double& {
    return map[static_cast<size_t>(((r % n + n) % n) * n + ((c % n + n) % n))];
  };
  double wibble = 100.0;
  auto wibbled_mean = [&](double sum) { return sum / 4.0 + wibble * rng.uniform(-wibble, wibble); };
  for (int64_t step = n; step >= 2; step /= 2) {
    const int64_t half = step / 2;
    // Squares: centre of each square from its four corners.
    for (int64_t r = 0; r < n; r += step) {
      for (int64_t c = 0; c < n; c += step) {
        at(r + half, c + half) =
            wibbled_mean(at(r, c) + at(r + step, c) + at(r, c + step) + at(r + step, c + step));
      }
    }
    // Diamonds: edge midpoints from the two corners and the two neighbouring centres.
    for (int64_t r = 0; r < n; r += step) {
      for (int64_t c = 0; c < n; c += step) {
        at(r, c + half) = wibbled_mean(at(r + half, c + half) + at(r - half, c + half) + at(r, c) +
                                       at(r, c + step));
      }
    }
    for (int64_t r = 0; r < n; r += step) {
      for (int64_t c = 0; c < n; c += step) {
        at(r + half, c) = wibbled_mean(at(r + half, c + half) + at(r + half, c - half) + at(r, c) +
                                       at(r + step, c));
      }
    }
    wibble /= wibble_decay;
  }
  const auto [low, high] = std::minmax_element(map.begin(), map.end());
  const double min = *low, range = *high - *low;
  for (auto& v : map) v = range > 0 ? (v - min) / range : 0.0;
  return map;
}

Image resize_box(const Image& image, int64_t rows, int64_t cols) {
  const auto horizontal = box_coefficients(image.cols, cols);
  const auto vertical = box_coefficients(image.rows, rows);
  Image wide(image.rows, cols);
  for (int64_t r = 0; r < image.rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      double sum = 0.0;
      const auto& w = horizontal.weights[static_cast<size_t>(c)];
      for (size_t i = 0; i < w.size(); ++i) {
        sum += w[i] * image.at(r, horizontal.first[static_cast<size_t>(c)] + static_cast<int64_t>(i));
      }
      wide.at(r, c) = static_cast<float>(sum);
    }
  }
  Image out(rows, cols);
  for (int64_t r = 0; r < rows; ++r) {
    const auto& w = vertical.weights[static_cast<size_t>(r)];
    for (int64_t c = 0; c < cols; ++c) {
      double sum = 0.0;
      for (size_t i = 0; i < w.size(); ++i) {
        sum += w[i] * wide.at(vertical.first[static_cast<size_t>(r)] + static_cast<int64_t>(i), c);
      }
      out.at(r, c) = static_cast<float>(sum);
    }
  }
  return out;
}

Image jpeg_round_trip(const Image& image, int64_t quality) {
  const auto table = quantisation_table(quality);
  const auto& basis = dct_basis();
  Image out(image.rows, image.cols);
  for (int64_t br = 0; br < image.rows; br += 8) {
    for (int64_t bc = 0; bc < image.cols; bc += 8) {
      double block[8][8], coefficients[8][8];
      for (int y = 0; y < 8; ++y) {
        for (int x = 0; x < 8; ++x) {  // level shift; edge blocks replicate the last pixels
          const float v = value_at(image, br + y, bc + x, Border::kNearest);
          block[y][x] = std::round(std::clamp(v, 0.f, 1.f) * 255.0) - 128.0;
        }
      }
      for (int v = 0; v < 8; ++v) {
        for (int u = 0; u < 8; ++u) {
          double sum = 0.0;
          for (int y = 0; y < 8; ++y) {
            for (int x = 0; x < 8; ++x) sum += basis[v][y] * basis[u][x] * block[y][x];
          }
          const int q = table[static_cast<size_t>(v * 8 + u)];
          coefficients[v][u] = std::round(sum / q) * q;
        }
      }
      for (int y = 0; y < 8; ++y) {
        for (int x = 0; x < 8; ++x) {
          if (br + y >= image.rows || bc + x >= image.cols) continue;
          double sum = 0.0;
          for (int v = 0; v < 8; ++v) {
            for (int u = 0; u < 8; ++u) sum += basis[v][y] * basis[u][x] * coefficients[v][u];
          }
          out.at(br + y, bc + x) = static_cast<float>(std::clamp(std::round(sum + 128.0), 0.0, 255.0) / 255.0);
        }
      }
    }
  }
  return out;
}

Image canny(const Image& image, double sigma, double low, double high) {
  // Smoothing that ignores the outside of the image (skimage's mask compensation).
  Image ones(image.rows, image.cols, 1.f);
  Image smoothed = gaussian_filter(image, sigma, Border::kZero);
  const Image weight = gaussian_filter(ones, sigma, Border::kZero);
  for (size_t i = 0; i < smoothed.px.size(); ++i) smoothed.px[i] /= weight.px[i];
  const int64_t rows = image.rows, cols = image.cols;
  Image gi(rows, cols), gj(rows, cols), magnitude(rows, cols);  // d/drow, d/dcol
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      auto s = [&](int64_t dr, int64_t dc) { return value_at(smoothed, r + dr, c + dc, Border::kReflect); };
      gi.at(r, c) = (s(1, -1) + 2 * s(1, 0) + s(1, 1)) - (s(-1, -1) + 2 * s(-1, 0) + s(-1, 1));
      gj.at(r, c) = (s(-1, 1) + 2 * s(0, 1) + s(1, 1)) - (s(-1, -1) + 2 * s(0, -1) + s(1, -1));
      magnitude.at(r, c) = std::hypot(gi.at(r, c), gj.at(r, c));
    }
  }
  // Non-maximum suppression with interpolation between the two neighbours on each side,
  // the four direction cases of skimage; the one-pixel border is never an edge.
  std::vector<uint8_t> maxima(static_cast<size_t>(rows * cols), 0);
  for (int64_t r = 1; r + 1 < rows; ++r) {
    for (int64_t c = 1; c + 1 < cols; ++c) {
      const float i = gi.at(r, c), j = gj.at(r, c), m = magnitude.at(r, c);
      if (m <= 0) continue;
      const float ai = std::fabs(i), aj = std::fabs(j);
      auto mag = [&](int64_t dr, int64_t dc) { return magnitude.at(r + dr, c + dc); };
      auto side = [&](float w, float near, float far) { return far * w + near * (1 - w) <= m; };
      bool keep = false;
      if ((i >= 0 && j >= 0) || (i <= 0 && j <= 0)) {
        if (ai >= aj) {
          const float w = aj / ai;
          keep = side(w, mag(1, 0), mag(1, 1)) && side(w, mag(-1, 0), mag(-1, -1));
        }
        if (ai <= aj) {
          const float w = ai / aj;
          keep = side(w, mag(0, 1), mag(1, 1)) && side(w, mag(0, -1), mag(-1, -1));
        }
      }
      if ((i <= 0 && j >= 0) || (i >= 0 && j <= 0)) {
        if (ai <= aj) {
          const float w = ai / aj;
          keep = side(w, mag(0, 1), mag(-1, 1)) && side(w, mag(0, -1), mag(1, -1));
        }
        if (ai >= aj) {
          const float w = aj / ai;
          keep = side(w, mag(-1, 0), mag(-1, 1)) && side(w, mag(1, 0), mag(1, -1));
        }
      }
      maxima[static_cast<size_t>(r * cols + c)] = keep;
    }
  }
  // Hysteresis: weak maxima connected (8-neighbourhood) to a strong one are edges.
  Image edges(rows, cols);
  std::vector<int64_t> stack;
  for (int64_t p = 0; p < rows * cols; ++p) {
    if (maxima[static_cast<size_t>(p)] && magnitude.px[static_cast<size_t>(p)] >= high) stack.push_back(p);
  }
  while (!stack.empty()) {
    const int64_t p = stack.back();
    stack.pop_back();
    if (edges.px[static_cast<size_t>(p)] > 0) continue;
    edges.px[static_cast<size_t>(p)] = 1.f;
    const int64_t r = p / cols, c = p % cols;
    for (int64_t dr = -1; dr <= 1; ++dr) {
      for (int64_t dc = -1; dc <= 1; ++dc) {
        const int64_t rr = r + dr, cc = c + dc;
        if (rr < 0 || rr >= rows || cc < 0 || cc >= cols) continue;
        const int64_t q = rr * cols + cc;
        if (maxima[static_cast<size_t>(q)] && magnitude.px[static_cast<size_t>(q)] >= low &&
            edges.px[static_cast<size_t>(q)] == 0) {
          stack.push_back(q);
        }
      }
    }
  }
  return edges;
}

Image line_from_points(int64_t rows, int64_t cols, double c0, double r0, double c1, double r1) {
  Image line(rows, cols);
  if (c1 == c0) return line;
  const double slope = (r1 - r0) / (c1 - c0);
  const auto left = static_cast<int64_t>(std::floor(c0));
  const auto right = static_cast<int64_t>(std::ceil(c1));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = std::max<int64_t>(left, 0); c < std::min(right, cols); ++c) {
      const double centre = slope * (static_cast<double>(c) - c0) + r0;
      const double distance = std::min(std::fabs(static_cast<double>(r) - centre), 2.3 - 1e-10);
      line.at(r, c) = static_cast<float>(std::clamp(std::log(1.0 - distance / 2.3) + 1.0, 0.0, 1.0));
    }
  }
  return line;
}

}  // namespace moelab
