// The fmnist_c and cifar_c corruption suites. Parameters: those of the reference scripts,
// Hendrycks & Dietterich's make_cifar_c.py (32-pixel CIFAR-10-C) and Mu & Gilmer's MNIST-C
// defaults, as listed per corruption below.
#include "tasks/image/corruptions.h"

#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "harness/core/error.h"

namespace moelab {
namespace {

constexpr double kPi = 3.14159265358979323846;

template <class T>
const T& at_severity(const std::vector<T>& values, int64_t severity) {
  return values.at(static_cast<size_t>(severity - 1));
}

Image map_pixels(Image x, const std::function<float(float)>& f) {
  for (auto& v : x.px) v = f(v);
  return x;
}

// ---- shared operations, parameterised ---------------------------------------------------

Image gaussian_noise(const Image& x, double sigma, Rng& rng) {
  return map_pixels(x, [&](float v) { return static_cast<float>(v + sigma * rng.normal()); });
}

Image shot_noise(const Image& x, double lambda, Rng& rng) {
  return map_pixels(x, [&](float v) {
    return static_cast<float>(static_cast<double>(rng.poisson(std::max(0.f, v) * lambda)) / lambda);
  });
}

// skimage random_noise(mode='s&p', amount): each pixel flipped with probability amount,
// to 1 or 0 with probability 1/2.
Image impulse_noise(const Image& x, double amount, Rng& rng) {
  return map_pixels(x, [&](float v) {
    const bool flipped = rng.uniform() <= amount;
    const bool salt = rng.uniform() < 0.5;
    return flipped ? (salt ? 1.f : 0.f) : v;
  });
}

// Gaussian blur, uint8 quantisation, local pixel swaps, Gaussian blur again. MNIST-C
// performs each swap only with probability 1/2.
Image glass_blur(const Image& x, double sigma, int64_t delta, int64_t iterations, bool coin,
                 Rng& rng) {
  Image y = map_pixels(gaussian_filter(x, sigma, Border::kNearest),
                       [](float v) { return std::floor(std::clamp(v, 0.f, 1.f) * 255.f) / 255.f; });
  for (int64_t it = 0; it < iterations; ++it) {
    for (int64_t h = y.rows - delta; h > delta; --h) {
      for (int64_t w = y.cols - delta; w > delta; --w) {
        const int64_t dx = rng.between(-delta, delta - 1), dy = rng.between(-delta, delta - 1);
        if (coin && rng.uniform() < 0.5) continue;
        std::swap(y.at(h, w), y.at(h + dy, w + dx));
      }
    }
  }
  return gaussian_filter(y, sigma, Border::kNearest);
}

Image motion(const Image& x, int64_t radius, double sigma, Rng& rng) {
  return motion_blur(x, radius, sigma, rng.uniform(-45, 45));
}

Image fog(const Image& x, double strength, double decay, int64_t mapsize, Rng& rng) {
  const auto map = plasma_fractal(mapsize, decay, rng);
  const float peak = *std::max_element(x.px.begin(), x.px.end());
  Image y = x;
  for (int64_t r = 0; r < y.rows; ++r) {
    for (int64_t c = 0; c < y.cols; ++c) {
      const double added = y.at(r, c) + strength * map[static_cast<size_t>(r * mapsize + c)];
      y.at(r, c) = static_cast<float>(added * peak / (peak + strength));
    }
  }
  return y;
}

// An affine warp about the image centre: the 2x2 part maps output to input coordinates.
Image warp_about_centre(const Image& x, double a1, double a2, double b1, double b2) {
  const double centre = (static_cast<double>(x.cols) - 1) / 2;
  const double m[6] = {a1, a2, centre * (1 - a1 - a2), b1, b2, centre * (1 - b1 - b2)};
  return warp_affine(x, m);
}

double random_sign(Rng& rng) { return rng.below(2) == 0 ? -1.0 : 1.0; }

// ---- fmnist_c: MNIST-C at its benchmark severities ---------------------------------------

Image m_shot_noise(const Image& x, int64_t, Rng& rng) { return shot_noise(x, 3.0, rng); }
Image m_impulse_noise(const Image& x, int64_t, Rng& rng) { return impulse_noise(x, 0.17, rng); }
Image m_glass_blur(const Image& x, int64_t, Rng& rng) { return glass_blur(x, 0.7, 1, 2, true, rng); }
Image m_motion_blur(const Image& x, int64_t, Rng& rng) { return motion(x, 10, 3.0, rng); }
Image m_shear(const Image& x, int64_t, Rng& rng) {
  const double shear = 0.4 * random_sign(rng);  // skimage AffineTransform(shear=...)
  return warp_about_centre(x, 1.0, -std::sin(shear), 0.0, std::cos(shear));
}
Image m_scale(const Image& x, int64_t, Rng&) {
  const double s = 1.0 / 0.7;  // inverse map: the content shrinks to 70%
  return warp_about_centre(x, s, 0.0, 0.0, s);
}
Image m_rotate(const Image& x, int64_t, Rng& rng) {
  const double angle = 0.4 * random_sign(rng);
  return warp_about_centre(x, std::cos(angle), -std::sin(angle), std::sin(angle), std::cos(angle));
}
Image m_brightness(const Image& x, int64_t, Rng&) {
  return map_pixels(x, [](float v) { return v + 0.5f; });
}
Image m_translate(const Image& x, int64_t, Rng& rng) {
  const double dx = 3.0 * random_sign(rng), dy = 3.0 * random_sign(rng);
  const double m[6] = {1, 0, dx, 0, 1, dy};
  return warp_affine(x, m);
}
Image m_stripe(const Image& x, int64_t, Rng&) {
  Image y = x;
  for (int64_t r = 0; r < y.rows; ++r) {
    for (int64_t c = 0; c < y.cols; ++c) {
      if (c < 7 || c >= y.cols - 7) y.at(r, c) = 1.f - y.at(r, c);
    }
  }
  return y;
}
Image m_fog(const Image& x, int64_t, Rng& rng) { return fog(x, 3.0, 1.4, 256, rng); }
Image m_spatter(const Image& x, int64_t, Rng& rng) {  // mud: (.65, .3, 1, .65, 1.5)
  Image liquid(x.rows, x.cols);
  for (auto& v : liquid.px) v = static_cast<float>(0.65 + 0.3 * rng.normal());
  liquid = gaussian_filter(liquid, 1.0, Border::kNearest);
  Image mask = map_pixels(liquid, [](float v) { return v > 0.65f ? 1.f : 0.f; });
  mask = map_pixels(gaussian_filter(mask, 1.5, Border::kNearest),
                    [](float v) { return v < 0.8f ? 0.f : v; });
  Image y = x;
  for (size_t i = 0; i < y.px.size(); ++i) {
    y.px[i] = y.px[i] * (1 - mask.px[i]) + 63.f / 255.f * mask.px[i];
  }
  return y;
}
Image m_dotted_line(const Image& x, int64_t, Rng& rng) {
  const double r0 = static_cast<double>(rng.between(0, x.rows - 2));
  const double r1 = static_cast<double>(rng.between(0, x.rows - 2));
  Image line = line_from_points(x.rows, x.cols, 0, r0, static_cast<double>(x.cols - 1), r1);
  Image y = x;
  for (int64_t r = 0; r < y.rows; ++r) {
    for (int64_t c = 0; c < y.cols; ++c) {
      if ((c / 2) % 2 == 1) y.at(r, c) += line.at(r, c);  // 2-pixel dashes, starting "off"
    }
  }
  return y;
}
// A zigzag (segments of 2 px, amplitude 2 px) from column 2 to column 25, rotated to run from
// row r0 to row r1; each segment drawn with line_from_points. MNIST-C's exact vertex
// placement is not among the reference notes; this follows its description.
Image m_zigzag(const Image& x, int64_t, Rng& rng) {
  const double c0 = 2, c1 = static_cast<double>(x.cols - 3);
  const double r0 = static_cast<double>(rng.between(0, x.rows - 2));
  const double r1 = r0 + static_cast<double>(rng.between(-5, 4));
  const double theta = std::atan((r1 - r0) / (c1 - c0));
  const double length = std::hypot(c1 - c0, r1 - r0);
  std::vector<std::pair<double, double>> vertices;  // (col, row)
  for (int64_t k = 0; 2.0 * static_cast<double>(k) <= length; ++k) {
    const double u = 2.0 * static_cast<double>(k), v = (k % 2 == 0) ? -1.0 : 1.0;
    vertices.emplace_back(c0 + u * std::cos(theta) - v * std::sin(theta),
                          r0 + u * std::sin(theta) + v * std::cos(theta));
  }
  Image y = x;
  for (size_t k = 0; k + 1 < vertices.size(); ++k) {
    auto a = vertices[k], b = vertices[k + 1];
    if (b.first < a.first) std::swap(a, b);
    Image segment = line_from_points(x.rows, x.cols, a.first, a.second, b.first, b.second);
    for (size_t i = 0; i < y.px.size(); ++i) y.px[i] = std::max(y.px[i], std::min(1.f, x.px[i] + segment.px[i]));
  }
  return y;
}
Image m_canny_edges(const Image& x, int64_t, Rng&) { return canny(x, 1.0, 0.1, 0.2); }

// ---- cifar_c: CIFAR-10-C at 32-pixel parameters, severities 1-5 --------------------------

Image c_gaussian_noise(const Image& x, int64_t s, Rng& rng) {
  return gaussian_noise(x, at_severity<double>({0.04, 0.06, 0.08, 0.09, 0.10}, s), rng);
}
Image c_shot_noise(const Image& x, int64_t s, Rng& rng) {
  return shot_noise(x, at_severity<double>({500, 250, 100, 75, 50}, s), rng);
}
Image c_impulse_noise(const Image& x, int64_t s, Rng& rng) {
  return impulse_noise(x, at_severity<double>({0.01, 0.02, 0.03, 0.05, 0.07}, s), rng);
}
// A disk of the given radius on a 17x17 grid, smoothed by a 3x3 Gaussian (cv2.GaussianBlur
// with the alias sigma), correlated with the image (cv2.filter2D, REFLECT_101).
Image c_defocus_blur(const Image& x, int64_t s, Rng&) {
  const auto [radius, alias] = at_severity<std::pair<double, double>>(
      {{0.3, 0.4}, {0.4, 0.5}, {0.5, 0.6}, {1, 0.2}, {1.5, 0.1}}, s);
  constexpr int64_t kSize = 17;
  Image disk(kSize, kSize);
  double total = 0.0;
  for (int64_t r = 0; r < kSize; ++r) {
    for (int64_t c = 0; c < kSize; ++c) {
      const double dr = static_cast<double>(r - 8), dc = static_cast<double>(c - 8);
      if (dr * dr + dc * dc <= radius * radius) {
        disk.at(r, c) = 1.f;
        total += 1.0;
      }
    }
  }
  for (auto& v : disk.px) v = static_cast<float>(v / total);
  const double w1 = std::exp(-1.0 / (2 * alias * alias)), norm = 1.0 + 2.0 * w1;
  const std::vector<double> taps = {w1 / norm, 1.0 / norm, w1 / norm};
  std::vector<double> smoothing(9);
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) smoothing[static_cast<size_t>(i * 3 + j)] = taps[static_cast<size_t>(i)] * taps[static_cast<size_t>(j)];
  }
  const Image kernel_image = correlate(disk, smoothing, 3, Border::kMirror);
  const std::vector<double> kernel(kernel_image.px.begin(), kernel_image.px.end());
  return correlate(x, kernel, kSize, Border::kMirror);
}
Image c_glass_blur(const Image& x, int64_t s, Rng& rng) {
  struct P { double sigma; int64_t delta, iterations; };
  const P p = at_severity<P>({{0.05, 1, 1}, {0.25, 1, 1}, {0.4, 1, 1}, {0.25, 1, 2}, {0.4, 1, 2}}, s);
  return glass_blur(x, p.sigma, p.delta, p.iterations, false, rng);
}
Image c_motion_blur(const Image& x, int64_t s, Rng& rng) {
  const auto [radius, sigma] = at_severity<std::pair<int64_t, double>>(
      {{6, 1}, {6, 1.5}, {6, 2}, {8, 2}, {9, 2.5}}, s);
  return motion(x, radius, sigma, rng);
}
// Mean of the image and its zooms by 1.00, 1.01, ... (numpy arange's factor counts).
Image c_zoom_blur(const Image& x, int64_t s, Rng&) {
  const int64_t factors = at_severity<int64_t>({7, 12, 16, 21, 26}, s);
  Image sum = x;
  for (int64_t i = 0; i < factors; ++i) {
    const Image zoomed = clipped_zoom(x, 1.0 + 0.01 * static_cast<double>(i));
    for (size_t p = 0; p < sum.px.size(); ++p) sum.px[p] += zoomed.px[p];
  }
  return map_pixels(sum, [&](float v) { return v / static_cast<float>(factors + 1); });
}
Image c_snow(const Image& x, int64_t s, Rng& rng) {
  struct P { double loc, scale, zoom, threshold; int64_t blur_radius; double blur_sigma, blend; };
  const P p = at_severity<P>({{0.1, 0.2, 1, 0.6, 8, 3, 0.95},
                              {0.1, 0.2, 1, 0.5, 10, 4, 0.9},
                              {0.15, 0.3, 1.75, 0.55, 10, 4, 0.9},
                              {0.25, 0.3, 2.25, 0.6, 12, 6, 0.85},
                              {0.3, 0.3, 1.25, 0.65, 14, 12, 0.8}}, s);
  Image layer(x.rows, x.cols);
  for (auto& v : layer.px) v = static_cast<float>(p.loc + p.scale * rng.normal());
  layer = map_pixels(clipped_zoom(layer, p.zoom), [&](float v) {
    v = v < p.threshold ? 0.f : v;
    return std::floor(std::clamp(v, 0.f, 1.f) * 255.f) / 255.f;
  });
  layer = map_pixels(motion_blur(layer, p.blur_radius, p.blur_sigma, rng.uniform(-135, -45)),
                     [](float v) { return std::round(v * 255.f) / 255.f; });
  Image y(x.rows, x.cols);
  for (int64_t r = 0; r < x.rows; ++r) {
    for (int64_t c = 0; c < x.cols; ++c) {
      const float v = x.at(r, c);
      const float whitened = static_cast<float>(p.blend * v + (1 - p.blend) * std::max(v, 1.5f * v + 0.5f));
      y.at(r, c) = whitened + layer.at(r, c) + layer.at(x.rows - 1 - r, x.cols - 1 - c);
    }
  }
  return y;
}
// SUBSTITUTE texture: the reference blends photographs of frost; here a procedural one,
// a squared plasma fractal plus thin random ice streaks, scaled to mean 0.5.
Image c_frost(const Image& x, int64_t s, Rng& rng) {
  const auto [image_weight, frost_weight] = at_severity<std::pair<double, double>>(
      {{1, 0.2}, {1, 0.3}, {0.9, 0.4}, {0.85, 0.4}, {0.75, 0.45}}, s);
  const auto plasma = plasma_fractal(32, 1.6, rng);
  Image texture(x.rows, x.cols);
  for (int64_t r = 0; r < x.rows; ++r) {
    for (int64_t c = 0; c < x.cols; ++c) {
      const double v = plasma[static_cast<size_t>(r * 32 + c)];
      texture.at(r, c) = static_cast<float>(v * v);
    }
  }
  for (int streak = 0; streak < 6; ++streak) {
    const double c0 = rng.uniform(0, static_cast<double>(x.cols) - 6), r0 = rng.uniform(0, static_cast<double>(x.rows));
    const double c1 = c0 + rng.uniform(3, 8), r1 = r0 + rng.uniform(-4, 4);
    const Image line = line_from_points(x.rows, x.cols, c0, r0, c1, r1);
    for (size_t i = 0; i < texture.px.size(); ++i) texture.px[i] = std::max(texture.px[i], 0.8f * line.px[i]);
  }
  double mean = 0.0;
  for (float v : texture.px) mean += v;
  mean /= static_cast<double>(texture.px.size());
  Image y = x;
  for (size_t i = 0; i < y.px.size(); ++i) {
    y.px[i] = static_cast<float>(image_weight * x.px[i] + frost_weight * texture.px[i] * 0.5 / std::max(mean, 1e-6));
  }
  return y;
}
Image c_fog(const Image& x, int64_t s, Rng& rng) {
  const auto [strength, decay] = at_severity<std::pair<double, double>>(
      {{0.2, 3}, {0.5, 3}, {0.75, 2.5}, {1, 2}, {1.5, 1.75}}, s);
  return fog(x, strength, decay, 32, rng);
}
Image c_brightness(const Image& x, int64_t s, Rng&) {
  const float c = static_cast<float>(at_severity<double>({0.05, 0.1, 0.15, 0.2, 0.3}, s));
  return map_pixels(x, [&](float v) { return v + c; });
}
Image c_contrast(const Image& x, int64_t s, Rng&) {
  const double c = at_severity<double>({0.75, 0.5, 0.4, 0.3, 0.15}, s);
  double mean = 0.0;
  for (float v : x.px) mean += v;
  mean /= static_cast<double>(x.px.size());
  return map_pixels(x, [&](float v) { return static_cast<float>((v - mean) * c + mean); });
}
// Random affine (three control points jittered, cv2.warpAffine with REFLECT_101) followed
// by a smooth random displacement field (Gaussian-filtered uniform noise times alpha).
Image c_elastic_transform(const Image& x, int64_t s, Rng& rng) {
  struct P { double alpha, sigma, affine; };
  const P p0 = at_severity<P>({{0, 0, 0.08}, {0.05, 0.2, 0.07}, {0.08, 0.06, 0.06},
                               {0.1, 0.04, 0.05}, {0.1, 0.03, 0.03}}, s);
  const double size = 32;  // the CIFAR script's IMSIZE
  const P p{p0.alpha * size, p0.sigma * size, p0.affine * size};
  const double centre = static_cast<double>(x.cols / 2), half = static_cast<double>(std::min(x.rows, x.cols) / 3);
  const double from[3][2] = {{centre + half, centre + half}, {centre + half, centre - half}, {centre - half, centre - half}};
  double to[3][2];
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 2; ++j) to[i][j] = from[i][j] + rng.uniform(-p.affine, p.affine);
  }
  // The affine map taking `to` back to `from` (warpAffine samples the source at M^-1(dst)):
  // solve [x y 1] * [a b c]^T = source coordinate for both output coordinates.
  auto solve = [&](int coordinate, double out[3]) {
    const double a[3][3] = {{to[0][0], to[0][1], 1}, {to[1][0], to[1][1], 1}, {to[2][0], to[2][1], 1}};
    const double det = a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) -
                       a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0]) +
                       a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
    for (int k = 0; k < 3; ++k) {
      double m[3][3];
      for (int r = 0; r < 3; ++r) {
        for (int c = 0; c < 3; ++c) m[r][c] = c == k ? from[r][coordinate] : a[r][c];
      }
      out[k] = (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) -
                m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
                m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])) / det;
    }
  };
  double row_x[3], row_y[3];
  solve(0, row_x);
  solve(1, row_y);
  const double inverse[6] = {row_x[0], row_x[1], row_x[2], row_y[0], row_y[1], row_y[2]};
  const Image warped = warp_affine(x, inverse, Border::kMirror);
  auto field = [&] {
    Image noise(x.rows, x.cols);
    for (auto& v : noise.px) v = static_cast<float>(rng.uniform(-1, 1));
    return map_pixels(gaussian_filter(noise, p.sigma, Border::kReflect, 3.0),
                      [&](float v) { return static_cast<float>(v * p.alpha); });
  };
  const Image dx = field(), dy = field();
  Image y(x.rows, x.cols);
  for (int64_t r = 0; r < x.rows; ++r) {
    for (int64_t c = 0; c < x.cols; ++c) {
      y.at(r, c) = bilinear(warped, static_cast<double>(r) + dy.at(r, c),
                            static_cast<double>(c) + dx.at(r, c), Border::kReflect);
    }
  }
  return y;
}
Image c_pixelate(const Image& x, int64_t s, Rng&) {
  const double c = at_severity<double>({0.95, 0.9, 0.85, 0.75, 0.65}, s);
  const Image small = resize_box(x, static_cast<int64_t>(static_cast<double>(x.rows) * c),
                                 static_cast<int64_t>(static_cast<double>(x.cols) * c));
  return resize_box(small, x.rows, x.cols);
}
Image c_jpeg_compression(const Image& x, int64_t s, Rng&) {
  return jpeg_round_trip(x, at_severity<int64_t>({80, 65, 58, 50, 40}, s));
}

}  // namespace

const std::vector<CorruptionEntry>& corruption_registry() {
  static const std::vector<CorruptionEntry> entries = {
      {"fmnist_c", "shot_noise", 1, m_shot_noise},
      {"fmnist_c", "impulse_noise", 1, m_impulse_noise},
      {"fmnist_c", "glass_blur", 1, m_glass_blur},
      {"fmnist_c", "motion_blur", 1, m_motion_blur},
      {"fmnist_c", "shear", 1, m_shear},
      {"fmnist_c", "scale", 1, m_scale},
      {"fmnist_c", "rotate", 1, m_rotate},
      {"fmnist_c", "brightness", 1, m_brightness},
      {"fmnist_c", "translate", 1, m_translate},
      {"fmnist_c", "stripe", 1, m_stripe},
      {"fmnist_c", "fog", 1, m_fog},
      {"fmnist_c", "spatter", 1, m_spatter},
      {"fmnist_c", "dotted_line", 1, m_dotted_line},
      {"fmnist_c", "zigzag", 1, m_zigzag},
      {"fmnist_c", "canny_edges", 1, m_canny_edges},
      {"cifar_c", "gaussian_noise", 5, c_gaussian_noise},
      {"cifar_c", "shot_noise", 5, c_shot_noise},
      {"cifar_c", "impulse_noise", 5, c_impulse_noise},
      {"cifar_c", "defocus_blur", 5, c_defocus_blur},
      {"cifar_c", "glass_blur", 5, c_glass_blur},
      {"cifar_c", "motion_blur", 5, c_motion_blur},
      {"cifar_c", "zoom_blur", 5, c_zoom_blur},
      {"cifar_c", "snow", 5, c_snow},
      {"cifar_c", "frost", 5, c_frost},
      {"cifar_c", "fog", 5, c_fog},
      {"cifar_c", "brightness", 5, c_brightness},
      {"cifar_c", "contrast", 5, c_contrast},
      {"cifar_c", "elastic_transform", 5, c_elastic_transform},
      {"cifar_c", "pixelate", 5, c_pixelate},
      {"cifar_c", "jpeg_compression", 5, c_jpeg_compression},
  };
  return entries;
}

std::vector<CorruptionEntry> suite_corruptions(const std::string& suite) {
  std::vector<CorruptionEntry> list;
  for (const auto& entry : corruption_registry()) {
    if (entry.suite == suite) list.push_back(entry);
  }
  if (list.empty()) {
    throw ConfigError(fmt::format("unknown corruption suite '{}' (fmnist_c, cifar_c)", suite));
  }
  return list;
}

const CorruptionEntry& find_corruption(std::string_view suite, std::string_view name) {
  for (const auto& entry : corruption_registry()) {
    if (entry.suite == suite && entry.name == name) return entry;
  }
  throw Error(fmt::format("suite '{}' has no corruption '{}'", suite, name));
}

torch::Tensor corrupt_images(const torch::Tensor& images, const CorruptionEntry& corruption,
                             int64_t severity, uint64_t seed) {
  MOELAB_CHECK(images.dim() == 3 && images.scalar_type() == torch::kByte,
               "corrupt_images: expected [N, H, W] uint8, got {} dimensions", images.dim());
  MOELAB_CHECK(severity >= 1 && severity <= corruption.severities,
               "{} {}: severity {} outside 1..{}", corruption.suite, corruption.name, severity,
               corruption.severities);
  auto source = images.contiguous();
  const int64_t count = source.size(0), rows = source.size(1), cols = source.size(2);
  auto out = torch::empty_like(source);
  const uint8_t* in_data = source.data_ptr<uint8_t>();
  uint8_t* out_data = out.data_ptr<uint8_t>();
  const uint64_t suite_key = fnv1a(corruption.suite), name_key = fnv1a(corruption.name);
  at::parallel_for(0, count, 64, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      Image image(rows, cols);
      const uint8_t* pixels = in_data + n * rows * cols;
      for (int64_t i = 0; i < rows * cols; ++i) image.px[static_cast<size_t>(i)] = pixels[i] / 255.f;
      Rng rng = Rng::keyed({seed, suite_key, name_key, static_cast<uint64_t>(severity),
                            static_cast<uint64_t>(n)});
      Image corrupted = corruption.apply(image, severity, rng);
      uint8_t* target = out_data + n * rows * cols;
      for (int64_t i = 0; i < rows * cols; ++i) {
        const float v = std::clamp(corrupted.px[static_cast<size_t>(i)], 0.f, 1.f);
        target[i] = static_cast<uint8_t>(v * 255.f);  // truncation, as np.uint8
      }
    }
  });
  return out;
}

}  // namespace moelab
