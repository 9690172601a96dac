// Image primitives the corruptions are built from, on single-channel float images in [0, 1]:
// Gaussian filtering, correlation, bilinear sampling, affine warps, zoom, motion blur, the
// plasma fractal, box resizing, a JPEG round trip and Canny edges. Each mirrors the library
// call the reference corruption code uses (scipy.ndimage, skimage, cv2, PIL, ImageMagick via
// imagecorruptions); the comment on each says which and how it differs.
#pragma once

#include <cstdint>
#include <vector>

#include "harness/core/rng.h"

namespace moelab {

struct Image {
  int64_t rows = 0, cols = 0;
  std::vector<float> px;  // row-major

  Image() = default;
  Image(int64_t rows, int64_t cols, float fill = 0.f)
      : rows(rows), cols(cols), px(static_cast<size_t>(rows * cols), fill) {}
  float& at(int64_t r, int64_t c) { return px[static_cast<size_t>(r * cols + c)]; }
  float at(int64_t r, int64_t c) const { return px[static_cast<size_t>(r * cols + c)]; }
};

// How indices outside the image are mapped:
//   nearest (scipy 'nearest', edge replication), reflect (scipy 'reflect', cv2 REFLECT:
//   d c b a | a b c d), mirror (scipy 'mirror', cv2 REFLECT_101: d c b | a b c d), zero.
enum class Border { kNearest, kReflect, kMirror, kZero };
int64_t border_index(int64_t i, int64_t n, Border border);  // -1 for kZero outside

void clip01(Image& image);

// scipy.ndimage.gaussian_filter: separable, kernel radius int(truncate * sigma + 0.5).
Image gaussian_filter(const Image& image, double sigma, Border border, double truncate = 4.0);

// cv2.filter2D: correlation with a square odd-sized kernel, anchor at the centre.
Image correlate(const Image& image, const std::vector<double>& kernel, int64_t size, Border border);

// Bilinear sample at (row, col) with the border rule applied to the four neighbours.
float bilinear(const Image& image, double row, double col, Border border);

// skimage.transform.warp with an inverse map given as the 2x3 matrix taking an output
// (col, row) to input coordinates; bilinear, zero outside.
Image warp_affine(const Image& image, const double inverse[6], Border border = Border::kZero);

// scipy.ndimage.zoom(order=1) of the centre crop of side ceil(side / factor), trimmed back to
// the image size (the reference code's clipped_zoom).
Image clipped_zoom(const Image& image, double factor);

// imagecorruptions' motion blur: a one-sided Gaussian line kernel of 2*radius+1 taps along
// `angle_degrees`, each tap an edge-replicated shift of the image.
Image motion_blur(const Image& image, int64_t radius, double sigma, double angle_degrees);

// Diamond-square plasma fractal on a mapsize x mapsize torus, normalised to [0, 1].
std::vector<double> plasma_fractal(int64_t mapsize, double wibble_decay, Rng& rng);

// PIL Image.resize with the BOX filter (float arithmetic instead of PIL's 8-bit passes).
Image resize_box(const Image& image, int64_t rows, int64_t cols);

// Baseline JPEG of a grayscale image at libjpeg `quality` (standard luminance table scaled
// as libjpeg does), decoded back: 8x8 DCT, quantisation, inverse DCT. Edge blocks are padded
// by replication; the entropy coding is lossless and omitted.
Image jpeg_round_trip(const Image& image, int64_t quality);

// skimage.feature.canny: Gaussian(sigma), Sobel gradients, non-maximum suppression,
// hysteresis between `low` and `high` gradient magnitudes. Returns 0/1.
Image canny(const Image& image, double sigma, double low, double high);

// MNIST-C's line_from_points: an anti-aliased line through (c0, r0)-(c1, r1), intensity
// clip(log(1 - d/2.3) + 1, 0, 1) at vertical distance d, limited to columns [floor c0, ceil c1).
Image line_from_points(int64_t rows, int64_t cols, double c0, double r0, double c1, double r1);

}  // namespace moelab
