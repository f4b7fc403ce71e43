// Parameter storage shared by all training threads (hogwild) and by predictors.
//
// Sparse tables hold one row per feature index; a row has `slots` groups of k
// weights (1 slot for plain embeddings and linear weights, F slots = one per
// target field for field-aware embeddings). Each slot stores its k weights
// followed by the optimizer's per-weight state (AdaGrad: k accumulators; Adam:
// k first and k second moments; FTRL: k z and k n), so a weight and its state
// share cache lines and one feature's whole row is one sequential read.
// Row-wise AdaGrad keeps one accumulator per slot instead: a row is then its
// slots' weights (slot stride k, so weight reads are as without state)
// followed by one float per slot.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "fieldfm/model.h"

#ifdef __SSE__
#include <immintrin.h>
#endif
#ifdef __linux__
#include <sys/mman.h>
#endif

namespace fieldfm {

// 64-byte aligned allocator so rows start on cache lines.
template <typename T>
struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() = default;
  template <typename U>
  AlignedAllocator(const AlignedAllocator<U>&) {}
  T* allocate(size_t n) {
    size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
    if (bytes >= kHugeMin) {
      // Big sparse tables are read at random rows: 2 MiB pages spare a TLB
      // miss per feature (transparent huge pages in "madvise" mode).
      bytes = (bytes + kHuge - 1) / kHuge * kHuge;
      void* p = std::aligned_alloc(kHuge, bytes);
      if (!p) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
      madvise(p, bytes, MADV_HUGEPAGE);
#endif
      return static_cast<T*>(p);
    }
    void* p = std::aligned_alloc(64, bytes == 0 ? 64 : bytes);
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  static constexpr size_t kHuge = size_t(2) << 20, kHugeMin = size_t(4) << 20;
  void deallocate(T* p, size_t) { std::free(p); }
  template <typename U>
  bool operator==(const AlignedAllocator<U>&) const { return true; }
};
using FloatVec = std::vector<float, AlignedAllocator<float>>;

// Per-weight state floats each optimizer keeps on sparse rows.
int StateCount(OptimizerType t);
// Per-slot state floats (after the row's weights) each optimizer keeps.
int SlotStateCount(OptimizerType t);

struct SparseTable {
  uint64_t rows = 0;
  uint32_t slots = 1;
  uint32_t k = 1;
  uint32_t state = 0;       // state floats per weight
  uint32_t slot_state = 0;  // state floats per slot, after the row's weights (row-wise AdaGrad)
  FloatVec data;            // rows * row_stride(), unless `mapped` is set
  // Inference in one-shot commands (LoadModel(path, map_in_place)): the
  // weights (no state) read in place from a private mapping of the model
  // file, which `mapping` keeps open. A model of gigabytes then loads in the
  // time of its checksum, without allocating and copying it.
  float* mapped = nullptr;
  std::shared_ptr<void> mapping;
  // Inference only: the vector used for an unseen value of field f, one row
  // (slots * k weights, no state) per field.
  FloatVec unseen;

  uint32_t slot_stride() const { return k * (1 + state); }
  uint64_t row_stride() const { return uint64_t(slots) * (slot_stride() + slot_state); }
  // The per-slot state of a row (slot s's floats at [s * slot_state, ...)).
  float* slot_states(float* row) const { return row + uint64_t(slots) * slot_stride(); }
  float* base() { return mapped ? mapped : data.data(); }
  const float* base() const { return mapped ? mapped : data.data(); }
  float* row(uint64_t r) { return base() + r * row_stride(); }
  const float* row(uint64_t r) const { return base() + r * row_stride(); }
  const float* unseen_row(uint32_t field) const { return unseen.data() + uint64_t(field) * slots * k; }
  // Weights only (no optimizer state), rows * slots * k floats.
  std::vector<float> Weights() const;
  // The weights of slots [first, first + n) (global slot = row * slots + slot)
  // into out[0, n * k): Weights() a piece at a time.
  void CopyWeights(uint64_t first, uint64_t n, float* out) const;
  // The reverse: weights of slots [first, first + n) from w[0, n * k), state untouched.
  void SetWeights(uint64_t first, uint64_t n, const float* w);
  // Keeps the weights only (state = slot_state = 0), moved down in place.
  void DropState();
};

struct DenseParam {
  FloatVec w;  // aligned: Eigen reductions then split sums the same way every run
  FloatVec s1, s2;  // optimizer state
  bool trainable = true;      // false: running statistics (batch norm)
  bool l2 = false;            // lambda_dense applies (weight matrices, not biases)
};

// Inference of lr and fm: each index's linear weight, or kUnknownBits where
// it has no vector of its own (known[j] == 0). One 4-byte read per feature
// then answers both; the known flags were one more random read per feature
// (bench/RESULTS.md, session 29). Built by FoldKnownIntoLinear (blocks.h).
struct KnownLinear {
  static constexpr uint32_t kUnknownBits = 0x7fc0dea1u;  // a NaN arithmetic never makes
  FloatVec w;
  bool empty() const { return w.empty(); }
};

// All parameters of one model, by name. Names are assigned by the model
// declarations, so a file can be matched to a freshly built graph.
struct ParamStore {
  uint32_t num_fields = 0;
  uint64_t num_indices = 0;
  int state = 0;  // optimizer state floats per weight (0 when loaded for inference)
  int slot_state = 0;  // optimizer state floats per slot (row-wise AdaGrad)
  std::map<std::string, SparseTable> sparse;
  std::map<std::string, DenseParam> dense;
  // Inference: which indices have their own vector (seen >= min_count times).
  std::vector<uint8_t> known;
  // Inference of lr and fm (empty: read `known` and the linear table).
  // Built after the tables' last change; nothing updates it.
  KnownLinear known_linear;
  uint64_t step = 0;  // optimizer steps taken (Adam bias correction)
};

struct OptimizerConfig {
  OptimizerType type = OptimizerType::kAdaGrad;  // sparse rows (linear weights, embeddings)
  float lr = 0.2f;
  // Dense parameters (bias, MLP, batch norm). Their gradient is summed over a
  // whole mini-batch, so deep models default to scale-free Adam here while the
  // sparse rows, each touched by a few rows of the batch, keep libffm's AdaGrad.
  OptimizerType dense_type = OptimizerType::kAdaGrad;
  float dense_lr = 0.2f;
  float lambda_embedding = 2e-5f;  // L2 on sparse rows (linear weights and embeddings), per touch
  float lambda_dense = 0.0f;       // L2 on dense layer weights
  float adagrad_init = 1.0f;       // initial accumulator (as libffm)
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  float ftrl_beta = 1.0f, ftrl_l1 = 0.0f;  // FTRL-proximal; lr is alpha, lambda is its L2
};

// A whole sparse row: `slots` slots of k weights (+ state), stride slot_stride,
// gradient slots packed (k apart). The hot loop of every sparse model.
// `step` is the 1-based global step for Adam's bias correction. Row-wise
// AdaGrad reads and writes slot s's accumulator at slot_acc[s].
void UpdateRow(const OptimizerConfig& c, float lambda, uint64_t step, float* row, const float* grad, uint32_t slots,
               uint32_t k, uint32_t slot_stride, float* slot_acc = nullptr);
void UpdateDense(const OptimizerConfig& c, float lambda, uint64_t step, DenseParam* p, const float* grad);

#ifdef __SSE__
// The estimate of 1/sqrt: with AVX-512 the 14-bit one, the same in every
// vector width, so the fused FFM kernel's 8- and 16-lane steps match this one.
inline __m128 Rsqrt4(__m128 x) {
#ifdef __AVX512VL__
  return _mm_rsqrt14_ps(x);
#else
  return _mm_rsqrt_ps(x);
#endif
}
#ifdef __AVX__
inline __m256 Rsqrt8(__m256 x) {
#ifdef __AVX512VL__
  return _mm256_rsqrt14_ps(x);
#else
  return _mm256_rsqrt_ps(x);
#endif
}
#endif
// (l0 + l1) + (l2 + l3): the FFM kernels' one horizontal sum per row.
inline float HorizontalSum4(__m128 v) {
  alignas(16) float lanes[4];
  _mm_store_ps(lanes, v);
  return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}
// AdaGrad on one slot of 4 weights followed by its 4 accumulators (k = 4):
// 1/sqrt is the hardware estimate alone, as libffm's step takes it (relative
// error below 2^-14 with AVX-512, 1.5 * 2^-12 with SSE). A Newton step on it
// cost 15% of an FFM epoch whose tables sit in cache and left the synthetic
// benchmark's best FFM test logloss at 0.4802 (bench/RESULTS.md, session 13).
// Shared by UpdateRow and the fused FFM kernel, so both give the same bytes.
inline void AdaGradSlot4(__m128 lr, __m128 lambda, float* w, __m128 grad) {
  const __m128 wv = _mm_loadu_ps(w);
  const __m128 g = _mm_add_ps(grad, _mm_mul_ps(lambda, wv));
  const __m128 acc = _mm_add_ps(_mm_loadu_ps(w + 4), _mm_mul_ps(g, g));
  _mm_storeu_ps(w + 4, acc);
  _mm_storeu_ps(w, _mm_sub_ps(wv, _mm_mul_ps(_mm_mul_ps(lr, g), Rsqrt4(acc))));
}

// Row-wise AdaGrad on one slot of 4 weights with accumulator *acc: the mean
// of the 4 squared gradients as ((g0² + g1²) + (g2² + g3²)) / 4, which the
// fused FFM kernel's in-lane sums reproduce, then AdaGradSlot4's update.
inline void RowAdaGradSlot4(__m128 lr, __m128 lambda, float* w, float* acc, __m128 grad) {
  const __m128 wv = _mm_loadu_ps(w);
  const __m128 g = _mm_add_ps(grad, _mm_mul_ps(lambda, wv));
  alignas(16) float sq[4];
  _mm_store_ps(sq, _mm_mul_ps(g, g));
  const float a = *acc + ((sq[0] + sq[1]) + (sq[2] + sq[3])) * 0.25f;
  *acc = a;
  _mm_storeu_ps(w, _mm_sub_ps(wv, _mm_mul_ps(_mm_mul_ps(lr, g), Rsqrt4(_mm_set1_ps(a)))));
}
#endif

// Fills the optimizer state of a freshly initialised table / dense param.
void InitState(const OptimizerConfig& c, SparseTable* t);
void InitState(const OptimizerConfig& c, DenseParam* p);

}  // namespace fieldfm
