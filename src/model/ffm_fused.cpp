#include "model/ffm_fused.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "model/blocks.h"
#include "util/prefetch.h"

namespace fieldfm {

namespace {

#ifdef __AVX2__
// Two pairs at once: lanes 0-3 belong to one slot, 4-7 to another. Every
// operation is lane-wise, so each slot gets exactly the bytes of the 4-wide
// AdaGradSlot4 (the generic graph's update).
inline __m256 Load2(const float* lo, const float* hi) {
  return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(lo)), _mm_loadu_ps(hi), 1);
}
inline void Store2(float* lo, float* hi, __m256 v) {
  _mm_storeu_ps(lo, _mm256_castps256_ps128(v));
  _mm_storeu_ps(hi, _mm256_extractf128_ps(v, 1));
}
inline void AdaGradSlots4x2(__m256 lr, __m256 lambda, float* w0, float* w1, __m256 wv, __m256 grad) {
  const __m256 g = _mm256_add_ps(grad, _mm256_mul_ps(lambda, wv));
  const __m256 acc = _mm256_add_ps(Load2(w0 + 4, w1 + 4), _mm256_mul_ps(g, g));
  Store2(w0 + 4, w1 + 4, acc);
  Store2(w0, w1, _mm256_sub_ps(wv, _mm256_mul_ps(_mm256_mul_ps(lr, g), Rsqrt8(acc))));
}
#endif

#if defined(__AVX512F__) && defined(__AVX512VL__)
// Four slots at once, 128-bit lane t for slot p[t]. A slot's 4 weights and 4
// accumulators are 32 contiguous bytes, so each slot is one 256-bit load;
// two 512-bit lane shuffles split them into weights w and accumulators a.
inline void LoadSlots4(float* const p[4], __m512* w, __m512* a) {
  const auto pair = [](const float* lo, const float* hi) {
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(_mm256_loadu_ps(lo))),
                                               _mm256_castps_pd(_mm256_loadu_ps(hi)), 1));
  };
  const __m512 s01 = pair(p[0], p[1]), s23 = pair(p[2], p[3]);  // [w0 a0 w1 a1], [w2 a2 w3 a3]
  *w = _mm512_shuffle_f32x4(s01, s23, _MM_SHUFFLE(2, 0, 2, 0));
  *a = _mm512_shuffle_f32x4(s01, s23, _MM_SHUFFLE(3, 1, 3, 1));
}
// Four consecutive slots (128 contiguous bytes), as LoadSlots4.
inline void LoadContiguousSlots4(const float* p, __m512* w, __m512* a) {
  const __m512 s01 = _mm512_loadu_ps(p), s23 = _mm512_loadu_ps(p + 16);
  *w = _mm512_shuffle_f32x4(s01, s23, _MM_SHUFFLE(2, 0, 2, 0));
  *a = _mm512_shuffle_f32x4(s01, s23, _MM_SHUFFLE(3, 1, 3, 1));
}
// Weights and accumulators back into slot order: [w0 a0 w1 a1], [w2 a2 w3 a3].
inline void Interleave4(__m512 w, __m512 a, __m512* s01, __m512* s23) {
  const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const __m512i hi = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  *s01 = _mm512_permutex2var_ps(w, lo, a);
  *s23 = _mm512_permutex2var_ps(w, hi, a);
}
inline void StoreSlots4(float* const p[4], __m512 w, __m512 a) {
  __m512 s01, s23;
  Interleave4(w, a, &s01, &s23);
  _mm256_storeu_ps(p[0], _mm512_castps512_ps256(s01));
  _mm256_storeu_ps(p[1], _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s01), 1)));
  _mm256_storeu_ps(p[2], _mm512_castps512_ps256(s23));
  _mm256_storeu_ps(p[3], _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s23), 1)));
}
// AdaGradSlot4's operations on four slots (loaded as w, a): the new weights
// and accumulators.
inline void AdaGrad4x4(__m512 lr, __m512 lambda, __m512 wv, __m512 a, __m512 grad, __m512* w_new, __m512* a_new) {
  const __m512 g = _mm512_add_ps(grad, _mm512_mul_ps(lambda, wv));
  *a_new = _mm512_add_ps(a, _mm512_mul_ps(g, g));
  *w_new = _mm512_sub_ps(wv, _mm512_mul_ps(_mm512_mul_ps(lr, g), _mm512_rsqrt14_ps(*a_new)));
}
inline void AdaGradSlots4x4(__m512 lr, __m512 lambda, float* const p[4], __m512 wv, __m512 a, __m512 grad) {
  __m512 w_new, a_new;
  AdaGrad4x4(lr, lambda, wv, a, grad, &w_new, &a_new);
  StoreSlots4(p, w_new, a_new);
}
inline void AdaGradContiguousSlots4x4(__m512 lr, __m512 lambda, float* p, __m512 wv, __m512 a, __m512 grad) {
  __m512 w_new, a_new, s01, s23;
  AdaGrad4x4(lr, lambda, wv, a, grad, &w_new, &a_new);
  Interleave4(w_new, a_new, &s01, &s23);
  _mm512_storeu_ps(p, s01);
  _mm512_storeu_ps(p + 16, s23);
}
#endif

// Starts loading one feature's table rows into L2 (L1 holds the current row's).
// Always inlined: at -O1 (the sanitizer build) GCC kept it out of line once it had three callers,
// and tests/model/prefetch_emitted.py looks for the prefetches one call deep.
// A hot row (HotRows) is trained in the thread's own copy, which is in cache:
// its shared row is not loaded.
[[gnu::always_inline]] inline void PrefetchFeature(const SparseTable& emb, const SparseTable& linear, const HotIndex* hot,
                            const Feature& f) {
  if (f.index >= emb.rows || f.index >= linear.rows || (hot && hot->Find(f.index) >= 0)) return;
  // From the line holding the row's first byte: a row whose length is not a
  // multiple of 64 B (k = 4: 1248 B) may start inside a line.
  const uintptr_t p = reinterpret_cast<uintptr_t>(emb.row(f.index));
  const uintptr_t end = p + emb.row_stride() * sizeof(float);
  for (uintptr_t q = p & ~uintptr_t(63); q < end; q += 64) PrefetchL2(reinterpret_cast<const char*>(q));
  PrefetchL2(linear.row(f.index));
}

#ifdef __SSE__
// The forward pair sum of a row's m present features (fields[i] ascending):
// product(i, j) is pair (i, j)'s 4 lanes, added into accumulator
// fields[j] mod 4 as FfmBlock::RowScore does (its absent fields add exact
// zeros), so the bytes match and four add chains run side by side.
template <class Product>
inline float PairSum(const uint32_t* fields, uint32_t m, uint32_t num_fields, Product product) {
  __m128 a0 = _mm_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  const auto add = [](__m128& acc, __m128 v) { acc = _mm_add_ps(acc, v); };
  if (m == num_fields) {  // every field present: position j is field j, groups known statically
    for (uint32_t i = 0; i < m; ++i) {
      uint32_t j = i + 1;
      if ((j & 3) == 1 && j < m) add(a1, product(i, j++));
      if ((j & 3) == 2 && j < m) add(a2, product(i, j++));
      if ((j & 3) == 3 && j < m) add(a3, product(i, j++));
      for (; j + 3 < m; j += 4) {
        add(a0, product(i, j));
        add(a1, product(i, j + 1));
        add(a2, product(i, j + 2));
        add(a3, product(i, j + 3));
      }
      if (j < m) add(a0, product(i, j++));
      if (j < m) add(a1, product(i, j++));
      if (j < m) add(a2, product(i, j++));
    }
  } else {
    __m128 acc[4] = {a0, a0, a0, a0};
    for (uint32_t i = 0; i < m; ++i)
      for (uint32_t j = i + 1; j < m; ++j) add(acc[fields[j] & 3], product(i, j));
    a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
  }
  return HorizontalSum4(_mm_add_ps(_mm_add_ps(a0, a1), _mm_add_ps(a2, a3)));
}

// Every value 1 (one-hot data): the products with the values are exact
// no-ops, and the kernels leave them out.
inline bool AllOnes(const float* xs, uint32_t m) {
  return std::all_of(xs, xs + m, [](float x) { return x == 1.0f; });
}

// PairSum of the pairs' value-scaled slots, slot(i, f) being position i's
// slot facing field f; with `unit` (AllOnes) without the products by values.
template <class Slot>
inline float ScaledPairSum(const uint32_t* fields, const float* xs, uint32_t m, uint32_t num_fields, bool unit,
                           Slot slot) {
  if (unit)
    return PairSum(fields, m, num_fields,
                   [&](uint32_t i, uint32_t j) { return _mm_mul_ps(slot(i, fields[j]), slot(j, fields[i])); });
  return PairSum(fields, m, num_fields, [&](uint32_t i, uint32_t j) {
    const __m128 ea = _mm_mul_ps(_mm_set1_ps(xs[i]), slot(i, fields[j]));
    const __m128 eb = _mm_mul_ps(_mm_set1_ps(xs[j]), slot(j, fields[i]));
    return _mm_mul_ps(ea, eb);
  });
}

#if defined(__AVX512F__) && defined(__AVX512VL__)
// ScaledPairSum when every field is present (m == F: position j is field j,
// so row i's slots for fields j..j+3 are contiguous), four pairs per 512-bit
// operation. Lane group t of `acc` is PairSum's accumulator t and receives the
// same additions in the same order (the unaligned first and last pairs of a
// position by masked adds), so the sum has the same bytes; the forward pass
// takes about a third of the instructions of the 128-bit loop.
// kSS: floats per slot (8: 4 weights + 4 AdaGrad accumulators; 4: weights).
template <uint32_t kSS, bool kUnit>
inline float FullPairSum16(const float* const* rows, const float* xs, uint32_t m) {
  static_assert(kSS == 4 || kSS == 8);
  const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  const __m512i weights = _mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
  __m512 acc = _mm512_setzero_ps();
  const auto one = [&](uint32_t i, uint32_t j) {  // ScaledPairSum's product of pair (i, j)
    const __m128 wa = _mm_loadu_ps(rows[i] + j * kSS), wb = _mm_loadu_ps(rows[j] + i * kSS);
    if constexpr (kUnit) return _mm_mul_ps(wa, wb);
    return _mm_mul_ps(_mm_mul_ps(_mm_set1_ps(xs[i]), wa), _mm_mul_ps(_mm_set1_ps(xs[j]), wb));
  };
  const auto add_one = [&](uint32_t t, __m128 v) {
    acc = _mm512_mask_add_ps(acc, __mmask16(0xFu << (4 * t)), acc, _mm512_broadcast_f32x4(v));
  };
  for (uint32_t i = 0; i < m; ++i) {
    const float* ra = rows[i];
    const uint32_t at = i * kSS;
    const __m512 xa = _mm512_set1_ps(xs[i]);
    uint32_t j = i + 1;
    if ((j & 3) == 1 && j < m) add_one(1, one(i, j)), ++j;
    if ((j & 3) == 2 && j < m) add_one(2, one(i, j)), ++j;
    if ((j & 3) == 3 && j < m) add_one(3, one(i, j)), ++j;
    for (; j + 3 < m; j += 4) {
      __m512 wa;
      if constexpr (kSS == 4) {
        wa = _mm512_loadu_ps(ra + j * 4);
      } else {
        wa = _mm512_permutex2var_ps(_mm512_loadu_ps(ra + j * 8), weights, _mm512_loadu_ps(ra + j * 8 + 16));
      }
      __m512 wb = _mm512_castps128_ps512(_mm_loadu_ps(rows[j] + at));
      wb = _mm512_insertf32x4(wb, _mm_loadu_ps(rows[j + 1] + at), 1);
      wb = _mm512_insertf32x4(wb, _mm_loadu_ps(rows[j + 2] + at), 2);
      wb = _mm512_insertf32x4(wb, _mm_loadu_ps(rows[j + 3] + at), 3);
      if constexpr (!kUnit) {
        wa = _mm512_mul_ps(xa, wa);
        wb = _mm512_mul_ps(_mm512_permutexvar_ps(spread, _mm512_castps128_ps512(_mm_loadu_ps(xs + j))), wb);
      }
      acc = _mm512_add_ps(acc, _mm512_mul_ps(wa, wb));
    }
    if (j < m) add_one(0, one(i, j)), ++j;
    if (j < m) add_one(1, one(i, j)), ++j;
    if (j < m) add_one(2, one(i, j)), ++j;
  }
  const __m128 a0 = _mm512_castps512_ps128(acc), a1 = _mm512_extractf32x4_ps(acc, 1),
               a2 = _mm512_extractf32x4_ps(acc, 2), a3 = _mm512_extractf32x4_ps(acc, 3);
  return HorizontalSum4(_mm_add_ps(_mm_add_ps(a0, a1), _mm_add_ps(a2, a3)));
}
#endif

// The pair sum by FullPairSum16 when every field is present (m == num_fields)
// and the rows' slots are ss = 4 or 8 floats apart; false: ScaledPairSum's case.
inline bool FullPairSum(const float* const* rows, const float* xs, uint32_t m, uint32_t num_fields, uint32_t ss,
                        bool unit, float* sum) {
#if defined(__AVX512F__) && defined(__AVX512VL__)
  if (m != num_fields) return false;
  if (ss == 8) {
    *sum = unit ? FullPairSum16<8, true>(rows, xs, m) : FullPairSum16<8, false>(rows, xs, m);
  } else if (ss == 4) {
    *sum = unit ? FullPairSum16<4, true>(rows, xs, m) : FullPairSum16<4, false>(rows, xs, m);
  } else {
    return false;
  }
  return true;
#else
  (void)rows, (void)xs, (void)m, (void)num_fields, (void)ss, (void)unit, (void)sum;
  return false;
#endif
}

// The pair loop of one training row. Position i of the row (in field order)
// has table row rows[i], field fields[i] and value xs[i]; `absent` lists the
// fields with no feature in the row (none: position j is field j, and a
// row's slots for fields j..j+3 are 128 contiguous bytes). kUnit: every
// value is 1 (one-hot data), so the products with xs, exact no-ops, are left
// out: the same bytes with fewer multiplies.
template <bool kUnit>
void UpdatePairs(float* const* rows, const uint32_t* fields, const float* xs, uint32_t m,
                 std::span<const uint32_t> absent, float go, float lr, float lambda, const SparseTable& emb,
                 const SparseTable& linear, const HotIndex* hot, std::span<const Feature> next) {
  constexpr uint32_t ss = 8;  // k = 4 weights + 4 accumulators: shifts, not multiplies, in the addressing
  [[maybe_unused]] const bool contiguous = absent.empty();  // read by the AVX-512 step
  const __m128 vgo = _mm_set1_ps(go), vlr = _mm_set1_ps(lr), vlambda = _mm_set1_ps(lambda), zero = _mm_setzero_ps();
  auto slot4 = [&](float* w, __m128 grad) { AdaGradSlot4(vlr, vlambda, w, grad); };
#ifdef __AVX2__
  const __m256 vgo8 = _mm256_set1_ps(go), vlr8 = _mm256_set1_ps(lr), vlambda8 = _mm256_set1_ps(lambda);
  auto slots4x2 = [&](float* w0, float* w1, __m256 wv, __m256 grad) {
    AdaGradSlots4x2(vlr8, vlambda8, w0, w1, wv, grad);
  };
#endif
#if defined(__AVX512F__) && defined(__AVX512VL__)
  const __m512 vgo16 = _mm512_set1_ps(go), vlr16 = _mm512_set1_ps(lr), vlambda16 = _mm512_set1_ps(lambda);
#endif
  for (uint32_t i = 0; i < m; ++i) {
    float* ra = rows[i];
    const uint32_t fa = fields[i];
    // The next row's tables load while this one updates, one feature per i.
    if (i < next.size()) PrefetchFeature(emb, linear, hot, next[i]);
    const __m128 xa = _mm_set1_ps(xs[i]);
    uint32_t j = i + 1;
#if defined(__AVX512F__) && defined(__AVX512VL__)
    const __m512 xa16 = _mm512_set1_ps(xs[i]);
    const auto x16 = [](__m512 x, __m512 v) { return kUnit ? v : _mm512_mul_ps(x, v); };
    for (; j + 3 < m; j += 4) {
      // Lanes 4t..4t+3: the pair (i, j + t).
      __m512 xb16 = xa16;
      if constexpr (!kUnit)
        xb16 = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                                     _mm512_castps128_ps512(_mm_loadu_ps(xs + j)));
      float* const pa[4] = {ra + fields[j] * ss, ra + fields[j + 1] * ss, ra + fields[j + 2] * ss,
                            ra + fields[j + 3] * ss};
      float* const pb[4] = {rows[j] + fa * ss, rows[j + 1] + fa * ss, rows[j + 2] + fa * ss, rows[j + 3] + fa * ss};
      __m512 wa, aa, wb, ab;
      // Contiguous: row i's four slots in two loads and two stores, not four
      // of each and their shuffles (the branch is the same for a whole row).
      if (contiguous) {
        LoadContiguousSlots4(pa[0], &wa, &aa);
      } else {
        LoadSlots4(pa, &wa, &aa);
      }
      LoadSlots4(pb, &wb, &ab);
      const __m512 ea = x16(xa16, wa), eb = x16(xb16, wb);
      const __m512 grad_a = x16(xa16, _mm512_mul_ps(vgo16, eb));
      if (contiguous) {
        AdaGradContiguousSlots4x4(vlr16, vlambda16, pa[0], wa, aa, grad_a);
      } else {
        AdaGradSlots4x4(vlr16, vlambda16, pa, wa, aa, grad_a);
      }
      AdaGradSlots4x4(vlr16, vlambda16, pb, wb, ab, x16(xb16, _mm512_mul_ps(vgo16, ea)));
    }
#endif
#ifdef __AVX2__
    const __m256 xa8 = _mm256_set1_ps(xs[i]);
    const auto x8 = [](__m256 x, __m256 v) { return kUnit ? v : _mm256_mul_ps(x, v); };
    for (; j + 1 < m; j += 2) {
      __m256 xb8 = xa8;
      if constexpr (!kUnit) xb8 = _mm256_insertf128_ps(_mm256_set1_ps(xs[j]), _mm_set1_ps(xs[j + 1]), 1);
      float* pa0 = ra + fields[j] * ss;
      float* pa1 = ra + fields[j + 1] * ss;
      float* pb0 = rows[j] + fa * ss;
      float* pb1 = rows[j + 1] + fa * ss;
      const __m256 wa = Load2(pa0, pa1), wb = Load2(pb0, pb1);
      const __m256 ea = x8(xa8, wa), eb = x8(xb8, wb);
      slots4x2(pa0, pa1, wa, x8(xa8, _mm256_mul_ps(vgo8, eb)));
      slots4x2(pb0, pb1, wb, x8(xb8, _mm256_mul_ps(vgo8, ea)));
    }
#endif
    const auto x4 = [](__m128 x, __m128 v) { return kUnit ? v : _mm_mul_ps(x, v); };
    for (; j < m; ++j) {
      const __m128 xb = _mm_set1_ps(xs[j]);
      float* pa = ra + fields[j] * ss;
      float* pb = rows[j] + fa * ss;
      const __m128 ea = x4(xa, _mm_loadu_ps(pa)), eb = x4(xb, _mm_loadu_ps(pb));
      slot4(pa, x4(xa, _mm_mul_ps(vgo, eb)));
      slot4(pb, x4(xb, _mm_mul_ps(vgo, ea)));
    }
    // Slots with no partner (own field, absent fields): only the L2 term.
    slot4(ra + fa * ss, zero);
    for (uint32_t h : absent) slot4(ra + h * ss, zero);
  }
  for (size_t i = m; i < next.size(); ++i) PrefetchFeature(emb, linear, hot, next[i]);
}

// UpdatePairs for row-wise AdaGrad: a row is F slots of 4 weights (16 B
// apart) and then F accumulators, one per slot, so a feature's row is
// 39 x 20 B = 780 B on the synthetic set instead of 1,248 B. Every slot gets
// RowAdaGradSlot4's operations, so the bytes match the generic graph's.
template <bool kUnit>
void UpdatePairsRowWise(float* const* rows, const uint32_t* fields, const float* xs, uint32_t m,
                        std::span<const uint32_t> absent, float go, float lr, float lambda, const SparseTable& emb,
                        const SparseTable& linear, const HotIndex* hot, std::span<const Feature> next) {
  constexpr uint32_t ss = 4;
  const uint32_t acc_at = emb.slots * ss;  // row + acc_at: the row's accumulators
  const __m128 vgo = _mm_set1_ps(go), vlr = _mm_set1_ps(lr), vlambda = _mm_set1_ps(lambda), zero = _mm_setzero_ps();
  auto slot4 = [&](float* row, uint32_t f, __m128 grad) {
    RowAdaGradSlot4(vlr, vlambda, row + f * ss, row + acc_at + f, grad);
  };
#if defined(__AVX512F__) && defined(__AVX512VL__)
  const bool contiguous = absent.empty();
  const __m512 vgo16 = _mm512_set1_ps(go), vlr16 = _mm512_set1_ps(lr), vlambda16 = _mm512_set1_ps(lambda);
  const __m512 quarter = _mm512_set1_ps(0.25f);
  const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  const __m512i gather = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  // Four slots' weights (lanes 4t..4t+3: slot t) and accumulators (lane t)
  // updated: RowAdaGradSlot4 on each 128-bit lane, its sum of squares as
  // (s0 + s1) + (s2 + s3) by two in-lane swaps.
  const auto update = [&](__m512 wv, __m128 acc, __m512 grad, __m512* w_new, __m128* acc_new) {
    const __m512 g = _mm512_add_ps(grad, _mm512_mul_ps(vlambda16, wv));
    const __m512 sq = _mm512_mul_ps(g, g);
    const __m512 pairs = _mm512_add_ps(sq, _mm512_permute_ps(sq, 0xB1));
    const __m512 sum = _mm512_add_ps(pairs, _mm512_permute_ps(pairs, 0x4E));
    const __m512 a = _mm512_add_ps(_mm512_permutexvar_ps(spread, _mm512_castps128_ps512(acc)),
                                   _mm512_mul_ps(sum, quarter));
    *w_new = _mm512_sub_ps(wv, _mm512_mul_ps(_mm512_mul_ps(vlr16, g), _mm512_rsqrt14_ps(a)));
    *acc_new = _mm512_castps512_ps128(_mm512_permutexvar_ps(gather, a));
  };
  const auto load4 = [](const float* p0, const float* p1, const float* p2, const float* p3) {
    __m512 v = _mm512_castps128_ps512(_mm_loadu_ps(p0));
    v = _mm512_insertf32x4(v, _mm_loadu_ps(p1), 1);
    v = _mm512_insertf32x4(v, _mm_loadu_ps(p2), 2);
    return _mm512_insertf32x4(v, _mm_loadu_ps(p3), 3);
  };
  const auto store4 = [](float* p0, float* p1, float* p2, float* p3, __m512 v) {
    _mm_storeu_ps(p0, _mm512_castps512_ps128(v));
    _mm_storeu_ps(p1, _mm512_extractf32x4_ps(v, 1));
    _mm_storeu_ps(p2, _mm512_extractf32x4_ps(v, 2));
    _mm_storeu_ps(p3, _mm512_extractf32x4_ps(v, 3));
  };
  const auto store_scalars = [](float* p0, float* p1, float* p2, float* p3, __m128 v) {
    _mm_store_ss(p0, v);
    _mm_store_ss(p1, _mm_movehdup_ps(v));
    _mm_store_ss(p2, _mm_movehl_ps(v, v));
    _mm_store_ss(p3, _mm_shuffle_ps(v, v, 3));
  };
#endif
  for (uint32_t i = 0; i < m; ++i) {
    float* ra = rows[i];
    const uint32_t fa = fields[i];
    if (i < next.size()) PrefetchFeature(emb, linear, hot, next[i]);
    uint32_t j = i + 1;
#if defined(__AVX512F__) && defined(__AVX512VL__)
    const __m512 xa16 = _mm512_set1_ps(xs[i]);
    const auto x16 = [](__m512 x, __m512 v) { return kUnit ? v : _mm512_mul_ps(x, v); };
    for (; j + 3 < m; j += 4) {
      __m512 xb16 = xa16;
      if constexpr (!kUnit) xb16 = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(_mm_loadu_ps(xs + j)));
      const uint32_t f0 = fields[j], f1 = fields[j + 1], f2 = fields[j + 2], f3 = fields[j + 3];
      float *b0 = rows[j], *b1 = rows[j + 1], *b2 = rows[j + 2], *b3 = rows[j + 3];
      // Contiguous: row i's four slots and accumulators are one load each.
      const __m512 wa = contiguous ? _mm512_loadu_ps(ra + f0 * ss)
                                   : load4(ra + f0 * ss, ra + f1 * ss, ra + f2 * ss, ra + f3 * ss);
      const __m128 aa = contiguous ? _mm_loadu_ps(ra + acc_at + f0)
                                   : _mm_setr_ps(ra[acc_at + f0], ra[acc_at + f1], ra[acc_at + f2], ra[acc_at + f3]);
      const __m512 wb = load4(b0 + fa * ss, b1 + fa * ss, b2 + fa * ss, b3 + fa * ss);
      const __m128 ab = _mm_setr_ps(b0[acc_at + fa], b1[acc_at + fa], b2[acc_at + fa], b3[acc_at + fa]);
      const __m512 ea = x16(xa16, wa), eb = x16(xb16, wb);
      __m512 wa_new, wb_new;
      __m128 aa_new, ab_new;
      update(wa, aa, x16(xa16, _mm512_mul_ps(vgo16, eb)), &wa_new, &aa_new);
      update(wb, ab, x16(xb16, _mm512_mul_ps(vgo16, ea)), &wb_new, &ab_new);
      if (contiguous) {
        _mm512_storeu_ps(ra + f0 * ss, wa_new);
        _mm_storeu_ps(ra + acc_at + f0, aa_new);
      } else {
        store4(ra + f0 * ss, ra + f1 * ss, ra + f2 * ss, ra + f3 * ss, wa_new);
        store_scalars(ra + acc_at + f0, ra + acc_at + f1, ra + acc_at + f2, ra + acc_at + f3, aa_new);
      }
      store4(b0 + fa * ss, b1 + fa * ss, b2 + fa * ss, b3 + fa * ss, wb_new);
      store_scalars(b0 + acc_at + fa, b1 + acc_at + fa, b2 + acc_at + fa, b3 + acc_at + fa, ab_new);
    }
#endif
    const __m128 xa = _mm_set1_ps(xs[i]);
    const auto x4 = [](__m128 x, __m128 v) { return kUnit ? v : _mm_mul_ps(x, v); };
    for (; j < m; ++j) {
      const __m128 xb = _mm_set1_ps(xs[j]);
      float* rb = rows[j];
      const __m128 ea = x4(xa, _mm_loadu_ps(ra + fields[j] * ss)), eb = x4(xb, _mm_loadu_ps(rb + fa * ss));
      slot4(ra, fields[j], x4(xa, _mm_mul_ps(vgo, eb)));
      slot4(rb, fa, x4(xb, _mm_mul_ps(vgo, ea)));
    }
    slot4(ra, fa, zero);
    for (uint32_t h : absent) slot4(ra, h, zero);
  }
  for (size_t i = m; i < next.size(); ++i) PrefetchFeature(emb, linear, hot, next[i]);
}
#endif

}  // namespace

FusedFfm::FusedFfm(DenseParam* bias, SparseTable* linear, SparseTable* embedding, uint32_t fields, bool normalize,
                   LossType loss, bool use_weights)
    : bias_(bias), linear_(linear), emb_(embedding), F_(fields), normalize_(normalize), loss_(loss),
      use_weights_(use_weights), pos_(fields, -1), vec_(fields), rows_(fields), fields_(fields),
      xs_(fields), local_(size_t(fields) * fields * 4), read_rows_(fields) {
  absent_.reserve(fields);
}

bool FusedFfm::Predict(const ParamStore& store, std::span<const Feature> row, float* pred,
                       std::span<const Feature> next) {
#ifndef __SSE__
  return false;
#else
  if (emb_->k != 4) return false;
  // The known flag of each feature is one more random byte: its load was 39%
  // of this function's samples on the 2M-row set (bench/RESULTS.md, session 27).
  Prefetch(next, store.known.empty() ? nullptr : &store.known);
  std::fill(pos_.begin(), pos_.end(), -1);
  float linear = 0, norm = 0;
  for (size_t i = 0; i < row.size(); ++i) {
    const Feature& f = row[i];
    norm += f.value * f.value;
    const RowRef lr = ResolveRow(store, *linear_, f, false);
    if (lr.p) linear += f.value * lr.p[0];
    const RowRef er = ResolveRow(store, *emb_, f, false);
    if (!er.p) continue;
    if (pos_[f.field] >= 0) return false;
    pos_[f.field] = int32_t(i);
    vec_[f.field] = er;
  }
  // Present fields in field order: their fields, values and (vec_ compacted) rows.
  uint32_t m = 0;
  for (uint32_t f = 0; f < F_; ++f)
    if (pos_[f] >= 0) {
      fields_[m] = f;
      xs_[m] = row[pos_[f]].value;
      vec_[m++] = vec_[f];
    }
  const float scale = norm > 0 ? 1.0f / norm : 1.0f;
  if (normalize_) linear *= std::sqrt(scale);
  // The pair loop reads slot (j, field i) of every other row in turn. On a
  // model mapped from its file, whose pages may be 4 KiB, that can be a TLB
  // miss per pair; copying each present feature's slots, row by row, into
  // local rows (4 floats per field) first makes it a miss per feature row.
  // Whether that pays depends on the host (mapped_read(): timed on the first
  // rows). Tables in memory are on 2 MiB pages (AlignedAllocator), where the
  // copy only cost time (bench/RESULTS.md, session 23): read in place.
  const uint32_t* fields = fields_.data();
  const float* xs = xs_.data();
  const bool unit = AllOnes(xs, m);
  const bool probing = emb_->mapped && mapped_read_ == MappedRead::kProbe;
  const bool copy = emb_->mapped && (mapped_read_ == MappedRead::kCopy ||
                                     (probing && (probe_rows_ / kProbeBlockRows) % 2 == 0));
  const auto t0 = probing ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
  float ffm;
  if (copy) {
    const size_t F4 = size_t(F_) * 4;
    for (uint32_t i = 0; i < m; ++i) {
      const RowRef r = vec_[i];
      float* dst = local_.data() + i * F4;
      if (r.slot_stride == 4) {
        std::copy_n(r.p, F4, dst);
      } else {
        for (uint32_t h = 0; h < F_; ++h) std::copy_n(r.p + size_t(h) * r.slot_stride, 4, dst + h * 4);
      }
    }
    const float* local = local_.data();
    for (uint32_t i = 0; i < m; ++i) read_rows_[i] = local + i * F4;
    if (!FullPairSum(read_rows_.data(), xs, m, F_, 4, unit, &ffm))
      ffm = ScaledPairSum(fields, xs, m, F_, unit,
                          [&](uint32_t i, uint32_t f) { return _mm_loadu_ps(local + i * F4 + f * 4); });
  } else {
    const RowRef* rows = vec_.data();
    // One stride for every row (an unseen value's mean row may differ): the 512-bit sum.
    uint32_t ss = m > 0 ? rows[0].slot_stride : 0;
    for (uint32_t i = 0; i < m; ++i) {
      read_rows_[i] = rows[i].p;
      if (rows[i].slot_stride != ss) ss = 0;
    }
    if (!FullPairSum(read_rows_.data(), xs, m, F_, ss, unit, &ffm))
      ffm = ScaledPairSum(fields, xs, m, F_, unit,
                          [&](uint32_t i, uint32_t f) { return _mm_loadu_ps(rows[i].p + f * rows[i].slot_stride); });
  }
  if (probing) {
    if (probe_rows_ >= kProbeWarmBlocks * kProbeBlockRows)
      probe_ns_[copy ? 0 : 1] +=
          std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
    if (++probe_rows_ == kProbeBlocks * kProbeBlockRows)
      mapped_read_ = probe_ns_[0] <= probe_ns_[1] ? MappedRead::kCopy : MappedRead::kInPlace;
  }
  if (normalize_) ffm *= scale;
  float phi = bias_->w[0];
  phi += linear;
  phi += ffm;
  *pred = LossBlock::RowPredict(loss_, phi);
  return true;
#endif
}

void FusedFfm::Prefetch(std::span<const Feature> row, const std::vector<uint8_t>* known) const {
  for (const Feature& f : row) {
    PrefetchFeature(*emb_, *linear_, hot_ ? &hot_->index() : nullptr, f);
    if (known && f.index < known->size()) PrefetchL1(known->data() + f.index);
  }
}

bool FusedFfm::Step(const BatchView& b, const OptimizerConfig& c, uint64_t step, std::span<const Feature> next,
                    double* loss_sum, double* weight_sum) {
#ifndef __SSE__
  return false;
#else
  const bool rowwise = c.type == OptimizerType::kRowAdaGrad && emb_->state == 0 && emb_->slot_state == 1 &&
                       linear_->state == 0 && linear_->slot_state == 1;
  if (b.rows != 1 || emb_->k != 4 || !(rowwise || (c.type == OptimizerType::kAdaGrad && emb_->state == 1)))
    return false;
  const std::span<const Feature> row = b.row(0);
  const size_t n = row.size();
  if (n > F_) return false;
  // Eligible: every feature valid, at most one per field, distinct indices
  // (then every weight slot belongs to one pair, so in-place pair updates see
  // exactly the pre-update values the generic graph uses).
  std::fill(pos_.begin(), pos_.end(), -1);
  sorted_index_.clear();
  for (size_t i = 0; i < n; ++i) {
    const Feature& f = row[i];
    if (f.field >= F_ || f.index >= emb_->rows || f.index >= linear_->rows || pos_[f.field] >= 0) return false;
    pos_[f.field] = int32_t(i);
    sorted_index_.push_back(f.index);
  }
  // Insertion sort: rows usually list their indices in ascending order.
  for (size_t i = 1; i < n; ++i) {
    const uint32_t v = sorted_index_[i];
    size_t j = i;
    for (; j > 0 && sorted_index_[j - 1] > v; --j) sorted_index_[j] = sorted_index_[j - 1];
    sorted_index_[j] = v;
  }
  for (size_t i = 1; i < n; ++i)
    if (sorted_index_[i] == sorted_index_[i - 1]) return false;
  uint32_t m = 0;
  absent_.clear();
  for (uint32_t f = 0; f < F_; ++f) {
    if (pos_[f] < 0) {
      absent_.push_back(f);
      continue;
    }
    const Feature& fe = row[pos_[f]];
    rows_[m] = hot_ ? hot_->embedding->Row(fe.index) : emb_->row(fe.index);
    fields_[m] = fe.field;
    xs_[m++] = fe.value;
  }

  // Forward, in the generic graph's order of operations.
  // With HotRows the bias and the hot linear weights are this thread's copies.
  DenseParam* const bias = hot_ ? hot_->bias.local() : bias_;
  const auto linear_row = [&](uint32_t index) { return hot_ ? hot_->linear.Row(index) : linear_->row(index); };
  float linear = 0, norm = 0;
  for (const Feature& f : row) linear += f.value * linear_row(f.index)[0];
  for (const Feature& f : row) norm += f.value * f.value;
  const float scale = norm > 0 ? 1.0f / norm : 1.0f;
  // Instance normalisation: pairs carry 1/Σx², the linear term 1/sqrt(Σx²).
  const float linear_scale = normalize_ ? std::sqrt(scale) : 1.0f;
  linear *= linear_scale;
  const uint32_t ss = emb_->slot_stride();
  float* const* rows = rows_.data();
  const uint32_t* fields = fields_.data();
  const float* xs = xs_.data();
  const bool unit = AllOnes(xs, m);
  float ffm;
  if (!FullPairSum(rows, xs, m, F_, ss, unit, &ffm))
    ffm = ScaledPairSum(fields, xs, m, F_, unit,
                        [&](uint32_t i, uint32_t f) { return _mm_loadu_ps(rows[i] + f * ss); });
  if (normalize_) ffm *= scale;
  float phi = bias->w[0];
  phi += linear;
  phi += ffm;
  const float w = use_weights_ && b.weights ? b.weights[0] : 1.0f;
  const float y = b.labels ? b.labels[0] : 0.0f;
  double row_loss;
  const float p = LossBlock::RowForward(loss_, phi, y, &row_loss);
  *loss_sum = double(w) * row_loss;
  *weight_sum = w;

  // Backward and update: bias, linear rows, then the field-aware pairs.
  float g = LossBlock::RowGrad(loss_, p, y, w);
  UpdateDense(c, bias->l2 ? c.lambda_dense : 0.0f, step, bias, &g);
  const float g_linear = g * linear_scale;
  for (const Feature& f : row) {  // UpdateRow's AdaGrad on one weight, inlined
    float* wl = linear_row(f.index);
    const float gl = f.value * g_linear + c.lambda_embedding * wl[0];
    wl[1] += gl * gl;
    wl[0] -= c.lr * gl / std::sqrt(wl[1]);
  }
  const float go = normalize_ ? g * scale : g;
  const HotIndex* hot = hot_ ? &hot_->index() : nullptr;
  if (rowwise) {
    (unit ? UpdatePairsRowWise<true> : UpdatePairsRowWise<false>)(rows_.data(), fields_.data(), xs_.data(), m,
                                                                  absent_, go, c.lr, c.lambda_embedding, *emb_,
                                                                  *linear_, hot, next);
  } else if (unit) {
    UpdatePairs<true>(rows_.data(), fields_.data(), xs_.data(), m, absent_, go, c.lr, c.lambda_embedding, *emb_,
                      *linear_, hot, next);
  } else {
    UpdatePairs<false>(rows_.data(), fields_.data(), xs_.data(), m, absent_, go, c.lr, c.lambda_embedding, *emb_,
                       *linear_, hot, next);
  }
  return true;
#endif
}

}  // namespace fieldfm
