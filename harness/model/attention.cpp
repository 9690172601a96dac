// Multi-head attention: the LibTorch reference and the fused CPU kernel (see attention.h).
// The kernel exists because ATen's CPU batched matmul runs a small-matrix product as one
// `select` and one `mm` call per matrix: the quickstart ViT (16 patches, 4 heads of 16) spent
// more time in those calls than in arithmetic. Here 16 (b, h) pairs are computed together, one
// per SIMD lane, groups of them over LibTorch's threads.
#include "harness/model/attention.h"

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "harness/core/error.h"

namespace moelab {

at::Tensor attention_reference(const at::Tensor& qkv, int64_t heads, bool causal,
                               double dropout, bool training) {
  const int64_t batch = qkv.size(0), length = qkv.size(1), dim = qkv.size(2) / 3;
  const int64_t head_dim = dim / heads;
  auto split = qkv.view({batch, length, 3, heads, head_dim}).permute({2, 0, 3, 1, 4});
  auto q = split[0], k = split[1], v = split[2];                                // [B, H, L, Dh]
  auto scores = at::matmul(q, k.transpose(-2, -1)) / std::sqrt(double(head_dim));  // [B,H,L,L]
  if (causal) {
    auto future = at::ones({length, length}, qkv.options().dtype(at::kBool)).triu(1);
    scores = scores.masked_fill(future, -std::numeric_limits<double>::infinity());
  }
  auto probs = at::dropout(at::softmax(scores, -1), dropout, training);  // [B, H, L, L]
  auto attended = at::matmul(probs, v);                                  // [B, H, L, Dh]
  return attended.transpose(1, 2).reshape({batch, length, dim});
}

namespace {

// What the kernel computes in: float (production) and double (tests).
bool kernel_dtype(const at::Tensor& t) {
  return t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble;
}

// GCC builds the marked kernels once per instruction set and picks one at load time (an ELF
// ifunc), so the portable binary uses AVX-512 or AVX2 where the CPU has them. None of the
// clones contracts multiply-adds into FMA (neither target enables it), so every clone rounds
// alike and results do not depend on which one the CPU gets.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MOELAB_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MOELAB_CPU_CLONES
#endif

// The kernel computes kLanes (b, h) pairs at once, one per SIMD lane: every innermost loop
// runs over the lanes, a compile-time count, so each step of the textbook algorithm is one
// vector instruction however small L and Dh are. A group's rows are gathered from the packed
// layout into [L, Dh, kLanes] buffers and the results scattered back.
constexpr int64_t kLanes = 16;

struct Shape {
  int64_t batch, heads, length, head_dim, dim;
  bool causal;
  int64_t pairs() const { return batch * heads; }
  int64_t groups() const { return (pairs() + kLanes - 1) / kLanes; }
  int64_t keys(int64_t i) const { return causal ? i + 1 : length; }  // keys query i attends
  int64_t rows() const { return length * head_dim; }                 // elements per pair
};

Shape shape_of(const at::Tensor& qkv, int64_t heads, bool causal) {
  const int64_t dim = qkv.size(2) / 3;
  return {qkv.size(0), heads, qkv.size(1), dim / heads, dim, causal};
}

// Offsets of each lane's pair in a [B, L, parts * D] tensor (-1: a padding lane past the
// last pair).
struct GroupOffsets {
  int64_t lane[kLanes];
};

GroupOffsets group_offsets(const Shape& shape, int64_t group, int64_t parts) {
  GroupOffsets offsets;
  for (int64_t lane = 0; lane < kLanes; ++lane) {
    const int64_t pair = group * kLanes + lane;
    offsets.lane[lane] = pair < shape.pairs() ? (pair / shape.heads) * shape.length * parts * shape.dim +
                                                    (pair % shape.heads) * shape.head_dim
                                              : -1;
  }
  return offsets;
}

// dst [L, Dh, kLanes] <- the lanes' [L, Dh] rows of `src` (row stride `stride`); zeros in
// padding lanes.
template <typename T>
void gather(const T* src, const GroupOffsets& offsets, int64_t stride, const Shape& shape,
            T* dst) {
  for (int64_t lane = 0; lane < kLanes; ++lane) {
    const int64_t offset = offsets.lane[lane];
    for (int64_t i = 0; i < shape.length; ++i) {
      for (int64_t d = 0; d < shape.head_dim; ++d) {
        dst[(i * shape.head_dim + d) * kLanes + lane] =
            offset < 0 ? T(0) : src[offset + i * stride + d];
      }
    }
  }
}

// The inverse of gather for the real lanes.
template <typename T>
void scatter(const T* src, const GroupOffsets& offsets, int64_t stride, const Shape& shape,
             T* dst) {
  for (int64_t lane = 0; lane < kLanes; ++lane) {
    const int64_t offset = offsets.lane[lane];
    if (offset < 0) continue;
    for (int64_t i = 0; i < shape.length; ++i) {
      for (int64_t d = 0; d < shape.head_dim; ++d) {
        dst[offset + i * stride + d] = src[(i * shape.head_dim + d) * kLanes + lane];
      }
    }
  }
}

// kLanes values of one type as one GCC vector: arithmetic on it is lane-wise, compiled to
// AVX-512, AVX2 or SSE instructions by each clone. Alignment of one element, so vectors load
// from any tensor row; may_alias, since the kernels view arrays of S through it.
template <typename S>
struct LanesOf;
template <>
struct LanesOf<float> {
  typedef float type __attribute__((vector_size(kLanes * sizeof(float)), aligned(sizeof(float)),
                                    __may_alias__));
};
template <>
struct LanesOf<double> {
  typedef double type __attribute__((vector_size(kLanes * sizeof(double)),
                                     aligned(sizeof(double)), __may_alias__));
};
template <typename S>
using Lanes = typename LanesOf<S>::type;

// x <- e^x lane by lane. float: Cephes' expf (range reduction by ln 2, a degree-7 polynomial)
// on vectors, so the softmax does not run one libm call per score: within 2 ulp of std::exp
// where e^x is a normal float (x in [-87.3, 88.37]), 0 below (no denormals), e^88.37 above,
// NaN for NaN. double (tests): std::exp.
inline __attribute__((always_inline)) void exp_lanes(Lanes<float>& x) {
  typedef int32_t Ints __attribute__((vector_size(kLanes * sizeof(int32_t)), aligned(4)));
  typedef uint32_t Bits __attribute__((vector_size(kLanes * sizeof(uint32_t)), aligned(4)));
  using V = Lanes<float>;
  const V low = V{} - 88.3762626647949f, high = V{} + 88.3762626647949f;
  const auto underflow = x < low;
  const auto not_a_number = x != x;
  const V input = x;
  x = not_a_number ? V{} : (x < low ? low : (x > high ? high : x));
  V n = x * 1.44269504088896341f + 0.5f;  // round(x / ln 2)
  const V truncated = __builtin_convertvector(__builtin_convertvector(n, Ints), V);
  n = truncated > n ? truncated - 1.0f : truncated;  // floor, in [-127, 128]
  x = x - n * 0.693359375f - n * -2.12194440e-4f;    // x - n ln 2, |x| <= ln 2 / 2
  V y = ((((1.9875691500e-4f * x + 1.3981999507e-3f) * x + 8.3334519073e-3f) * x +
          4.1665795894e-2f) * x + 1.6666665459e-1f) * x + 5.0000001201e-1f;
  y = y * (x * x) + x + 1.0f;
  // 2^n as float bits: exponent field n + 127 (0 for n = -127: the product is then 0).
  const Bits two_to_n = __builtin_convertvector(__builtin_convertvector(n, Ints) + 127, Bits) << 23;
  y *= (V)two_to_n;
  x = underflow ? V{} : (not_a_number ? input : y);
}
inline __attribute__((always_inline)) void exp_lanes(Lanes<double>& x) {
  for (int64_t lane = 0; lane < kLanes; ++lane) x[lane] = std::exp(x[lane]);
}

// One group's probabilities [L, L] and output [L, Dh] (each element a vector of lanes) from
// q, k, v [L, Dh]. Probabilities of masked keys are 0. Arrays of S, viewed as vectors.
template <typename S>
inline __attribute__((always_inline)) void forward_group(const Shape& shape, S scale,
                                                         const S* q_flat, const S* k_flat,
                                                         const S* v_flat, S* probs_flat,
                                                         S* out_flat) {
  using V = Lanes<S>;
  const V *q = reinterpret_cast<const V*>(q_flat), *k = reinterpret_cast<const V*>(k_flat),
          *v = reinterpret_cast<const V*>(v_flat);
  V *probs = reinterpret_cast<V*>(probs_flat), *out = reinterpret_cast<V*>(out_flat);
  const int64_t L = shape.length, Dh = shape.head_dim;
  for (int64_t i = 0; i < L; ++i) {
    V* p = probs + i * L;  // [L]: scores, then probabilities
    const int64_t keys = shape.keys(i);
    V top{};
    for (int64_t j = 0; j < keys; ++j) {
      V score{};
      for (int64_t d = 0; d < Dh; ++d) score += q[i * Dh + d] * k[j * Dh + d];
      p[j] = score * scale;
      top = j == 0 ? p[j] : (p[j] > top ? p[j] : top);
    }
    V total{};
    for (int64_t j = 0; j < keys; ++j) {
      p[j] -= top;
      exp_lanes(p[j]);
      total += p[j];
    }
    const V inverse = S(1) / total;
    for (int64_t j = 0; j < keys; ++j) p[j] *= inverse;
    for (int64_t j = keys; j < L; ++j) p[j] = V{};
    for (int64_t d = 0; d < Dh; ++d) {
      V acc{};
      for (int64_t j = 0; j < keys; ++j) acc += p[j] * v[j * Dh + d];
      out[i * Dh + d] = acc;
    }
  }
}

// One group's gradients of q, k, v [L, Dh] from q, k, v, the probabilities [L, L] and the
// output's gradient [L, Dh]. row: scratch [L]. Arrays of S, viewed as vectors.
template <typename S>
inline __attribute__((always_inline)) void backward_group(
    const Shape& shape, S scale, const S* q_flat, const S* k_flat, const S* v_flat,
    const S* probs_flat, const S* grad_out_flat, S* grad_q_flat, S* grad_k_flat,
    S* grad_v_flat, S* row_flat) {
  using V = Lanes<S>;
  const V *q = reinterpret_cast<const V*>(q_flat), *k = reinterpret_cast<const V*>(k_flat),
          *v = reinterpret_cast<const V*>(v_flat), *probs = reinterpret_cast<const V*>(probs_flat),
          *grad_out = reinterpret_cast<const V*>(grad_out_flat);
  V *grad_q = reinterpret_cast<V*>(grad_q_flat), *grad_k = reinterpret_cast<V*>(grad_k_flat),
    *grad_v = reinterpret_cast<V*>(grad_v_flat), *row = reinterpret_cast<V*>(row_flat);
  const int64_t L = shape.length, Dh = shape.head_dim;
  std::fill(grad_k, grad_k + L * Dh, V{});
  std::fill(grad_v, grad_v + L * Dh, V{});
  for (int64_t i = 0; i < L; ++i) {
    const V* p = probs + i * L;
    const V* go_i = grad_out + i * Dh;
    const int64_t keys = shape.keys(i);
    V weighted{};  // sum_j p_ij * (d loss / d p_ij)
    for (int64_t j = 0; j < keys; ++j) {
      V grad_p{};
      for (int64_t d = 0; d < Dh; ++d) grad_p += go_i[d] * v[j * Dh + d];
      row[j] = grad_p;
      weighted += p[j] * grad_p;
    }
    for (int64_t j = 0; j < keys; ++j) row[j] = p[j] * (row[j] - weighted) * scale;  // d score
    for (int64_t d = 0; d < Dh; ++d) {
      V acc{};
      const V q_id = q[i * Dh + d], go_id = go_i[d];
      for (int64_t j = 0; j < keys; ++j) {
        acc += row[j] * k[j * Dh + d];
        grad_k[j * Dh + d] += row[j] * q_id;
        grad_v[j * Dh + d] += p[j] * go_id;
      }
      grad_q[i * Dh + d] = acc;
    }
  }
}

// The float kernels, built once per instruction set (inlined into each clone).
MOELAB_CPU_CLONES void forward_group_float(const Shape& shape, float scale, const float* q,
                                           const float* k, const float* v, float* probs,
                                           float* out) {
  forward_group(shape, scale, q, k, v, probs, out);
}
MOELAB_CPU_CLONES void backward_group_float(const Shape& shape, float scale, const float* q,
                                            const float* k, const float* v, const float* probs,
                                            const float* grad_out, float* grad_q, float* grad_k,
                                            float* grad_v, float* row) {
  backward_group(shape, scale, q, k, v, probs, grad_out, grad_q, grad_k, grad_v, row);
}

// The kernel for S: float through the per-ISA clones, double (tests) in the portable build.
template <typename S>
void forward_group_of(const Shape& shape, S scale, const S* q, const S* k, const S* v,
                      S* probs, S* out) {
  if constexpr (std::is_same_v<S, float>) {
    forward_group_float(shape, scale, q, k, v, probs, out);
  } else {
    forward_group(shape, scale, q, k, v, probs, out);
  }
}
template <typename S>
void backward_group_of(const Shape& shape, S scale, const S* q, const S* k, const S* v,
                       const S* probs, const S* grad_out, S* grad_q, S* grad_k, S* grad_v,
                       S* row) {
  if constexpr (std::is_same_v<S, float>) {
    backward_group_float(shape, scale, q, k, v, probs, grad_out, grad_q, grad_k, grad_v, row);
  } else {
    backward_group(shape, scale, q, k, v, probs, grad_out, grad_q, grad_k, grad_v, row);
  }
}

// q, k, v [L, Dh, kLanes] <- the three parts of a group's packed [B, L, 3 * D] rows.
template <typename T>
void gather_qkv(const T* qkv, const GroupOffsets& offsets, const Shape& shape, T* q, T* k,
                T* v) {
  gather(qkv, offsets, 3 * shape.dim, shape, q);
  gather(qkv + shape.dim, offsets, 3 * shape.dim, shape, k);
  gather(qkv + 2 * shape.dim, offsets, 3 * shape.dim, shape, v);
}

// The inverse of gather_qkv.
template <typename T>
void scatter_qkv(const T* q, const T* k, const T* v, const GroupOffsets& offsets,
                 const Shape& shape, T* qkv) {
  scatter(q, offsets, 3 * shape.dim, shape, qkv);
  scatter(k, offsets, 3 * shape.dim, shape, qkv + shape.dim);
  scatter(v, offsets, 3 * shape.dim, shape, qkv + 2 * shape.dim);
}

template <typename T>
T scale_of(const Shape& shape) {
  return T(1.0 / std::sqrt(double(shape.head_dim)));
}

// A task's scratch: N consecutive arrays of the given lengths in one buffer; its size and
// each array's offset computed together.
template <size_t N>
struct ScratchLayout {
  std::array<int64_t, N> offsets{};
  int64_t size = 0;

  explicit ScratchLayout(const std::array<int64_t, N>& lengths) {
    for (size_t i = 0; i < N; ++i) {
      offsets[i] = size;
      size += lengths[i];
    }
  }
  template <typename T>
  std::array<T*, N> arrays(T* scratch) const {
    std::array<T*, N> pointers;
    for (size_t i = 0; i < N; ++i) pointers[i] = scratch + offsets[i];
    return pointers;
  }
};

// Runs fn(group, arrays) for every group over LibTorch's threads, each task with its own
// scratch in `layout`.
template <typename T, size_t N, typename Fn>
void for_each_group(const Shape& shape, const ScratchLayout<N>& layout, const Fn& fn) {
  at::parallel_for(0, shape.groups(), 1, [&](int64_t begin, int64_t end) {
    std::vector<T> scratch(static_cast<size_t>(layout.size));
    const std::array<T*, N> arrays = layout.arrays(scratch.data());
    for (int64_t group = begin; group < end; ++group) fn(group, arrays);
  });
}

// The attention output [B, L, D] of qkv; the probabilities [G, L, L, kLanes] into *probs when
// given (for the backward), else only through each task's scratch.
at::Tensor attend(const at::Tensor& qkv, const Shape& shape, at::Tensor* probs) {
  const int64_t L = shape.length, block = shape.rows() * kLanes, probs_block = L * L * kLanes;
  auto out = at::empty({shape.batch, L, shape.dim}, qkv.options());  // [B, L, D]
  if (probs != nullptr) *probs = at::empty({shape.groups(), L, L, kLanes}, qkv.options());
  AT_DISPATCH_FLOATING_TYPES(qkv.scalar_type(), "attention_fused", [&] {
    const scalar_t* src = qkv.data_ptr<scalar_t>();
    scalar_t* saved = probs != nullptr ? probs->data_ptr<scalar_t>() : nullptr;
    scalar_t* o = out.data_ptr<scalar_t>();
    const ScratchLayout<5> layout({block, block, block, block, probs_block});
    for_each_group<scalar_t>(shape, layout, [&](int64_t group, const auto& arrays) {
      auto [q, k, v, attended, p] = arrays;  // [L, Dh, kLanes] x 4, [L, L, kLanes]
      gather_qkv(src, group_offsets(shape, group, 3), shape, q, k, v);
      if (saved != nullptr) p = saved + group * probs_block;
      forward_group_of(shape, scale_of<scalar_t>(shape), q, k, v, p, attended);
      scatter(attended, group_offsets(shape, group, 1), shape.dim, shape, o);
    });
  });
  return out;
}

class FusedAttention : public torch::autograd::Function<FusedAttention> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& qkv,
                            int64_t heads, bool causal) {
    at::Tensor probs;
    auto out = attend(qkv, shape_of(qkv, heads, causal), &probs);
    ctx->save_for_backward({qkv, probs});
    ctx->saved_data["heads"] = heads;
    ctx->saved_data["causal"] = causal;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    // The gradient is computed outside autograd: a graph through it (create_graph, for a
    // second derivative) would silently miss the second-order terms.
    MOELAB_CHECK(!at::GradMode::is_enabled(),
                 "attention_fused: no double backward (create_graph); use attention_reference");
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& qkv = saved[0];
    const at::Tensor& probs = saved[1];
    const Shape shape =
        shape_of(qkv, ctx->saved_data["heads"].toInt(), ctx->saved_data["causal"].toBool());
    const int64_t L = shape.length, block = shape.rows() * kLanes;
    const at::Tensor grad_out = grads[0].contiguous();  // [B, L, D]
    auto grad_qkv = at::empty_like(qkv);                // [B, L, 3 * D]
    AT_DISPATCH_FLOATING_TYPES(qkv.scalar_type(), "attention_fused_backward", [&] {
      const scalar_t* src = qkv.data_ptr<scalar_t>();
      const scalar_t* p = probs.data_ptr<scalar_t>();
      const scalar_t* go = grad_out.data_ptr<scalar_t>();
      scalar_t* gsrc = grad_qkv.data_ptr<scalar_t>();
      const ScratchLayout<8> layout({block, block, block, block, block, block, block, L * kLanes});
      for_each_group<scalar_t>(shape, layout, [&](int64_t group, const auto& arrays) {
        // [L, Dh, kLanes] x 7, [L, kLanes]
        const auto [q, k, v, g_out, g_q, g_k, g_v, row] = arrays;
        const GroupOffsets in = group_offsets(shape, group, 3);
        gather_qkv(src, in, shape, q, k, v);
        gather(go, group_offsets(shape, group, 1), shape.dim, shape, g_out);
        backward_group_of(shape, scale_of<scalar_t>(shape), q, k, v,
                           p + group * L * L * kLanes, g_out, g_q, g_k, g_v, row);
        scatter_qkv(g_q, g_k, g_v, in, shape, gsrc);
      });
    });
    return {grad_qkv, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

// GCC 14 reports false -Warray-bounds and -Wstringop-overflow warnings inside LibTorch 2.x's
// Function::apply (a std::vector<bool> reserve in custom_function.h) once it is inlined here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
at::Tensor attention_fused(const at::Tensor& qkv, int64_t heads, bool causal) {
  MOELAB_CHECK(qkv.device().is_cpu() && qkv.is_contiguous() && kernel_dtype(qkv),
               "attention_fused: needs a contiguous float or double CPU tensor, got {} on {}",
               std::string(qkv.dtype().name()), qkv.device().str());
  MOELAB_CHECK(qkv.dim() == 3 && qkv.size(2) % (3 * heads) == 0,
               "attention_fused: qkv must be [B, L, 3 * D] with D divisible by {} heads",
               heads);
  if (at::GradMode::is_enabled() && qkv.requires_grad()) {
    return FusedAttention::apply(qkv, heads, causal);
  }
  return attend(qkv, shape_of(qkv, heads, causal), nullptr);  // nothing saved for a backward
}
#pragma GCC diagnostic pop

at::Tensor attention(const at::Tensor& qkv, int64_t heads, bool causal, double dropout,
                     bool training) {
  const bool fused = qkv.device().is_cpu() && kernel_dtype(qkv) && !(training && dropout > 0);
  if (fused) return attention_fused(qkv.contiguous(), heads, causal);
  return attention_reference(qkv, heads, causal, dropout, training);
}

}  // namespace moelab
