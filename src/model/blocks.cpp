#include "model/blocks.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#ifdef __SSE__
#include <immintrin.h>
#endif

#include "model/gemm.h"
#include "util/mix.h"
#include "util/prefetch.h"

namespace fieldfm {

namespace {

inline float WeightOf(const BatchView& b, size_t r) { return b.weights ? b.weights[r] : 1.0f; }

// dst += a * src over n floats; the a == 1 case (one-hot data) skips the multiply.
// src is a table row and dst an activation buffer, never the same memory:
// without __restrict GCC kept k = 8 scalar, reloading src after each store
// (an FM predict's profile showed the 8 loads, multiplies and stores).
inline void Axpy(float a, const float* __restrict src, float* __restrict dst, uint32_t n) {
  if (a == 1.0f) {
    for (uint32_t d = 0; d < n; ++d) dst[d] += src[d];
  } else {
    for (uint32_t d = 0; d < n; ++d) dst[d] += a * src[d];
  }
}

// Axpy with n = 8 as one 8-lane add: the same operations (GCC built this
// vector from scalar loads and inserts).
inline void Axpy8(float a, const float* __restrict src, float* __restrict dst) {
#ifdef __AVX__
  const __m256 v = _mm256_loadu_ps(src);
  _mm256_storeu_ps(dst, _mm256_add_ps(_mm256_loadu_ps(dst), a == 1.0f ? v : _mm256_mul_ps(_mm256_set1_ps(a), v)));
#else
  Axpy(a, src, dst, 8);
#endif
}

// dst[4g..4g+4) += a * src[g*stride..+4) for g < slots: k = 4 slots with
// optimizer state between them.
inline void AxpySlots4(float a, const float* __restrict src, uint32_t stride, float* __restrict dst, uint32_t slots) {
#ifdef __SSE__
  const __m128 va = _mm_set1_ps(a);
  for (uint32_t g = 0; g < slots; ++g)
    _mm_storeu_ps(dst + 4 * g, _mm_add_ps(_mm_loadu_ps(dst + 4 * g), _mm_mul_ps(va, _mm_loadu_ps(src + g * stride))));
#else
  for (uint32_t g = 0; g < slots; ++g)
    for (int d = 0; d < 4; ++d) dst[4 * g + d] += a * src[g * stride + d];
#endif
}

// ---- sparse input blocks ---------------------------------------------------

}  // namespace

float InstanceScale(std::span<const Feature> row) {
  float s = 0;
  for (const Feature& f : row) s += f.value * f.value;
  return s > 0 ? 1.0f / s : 1.0f;
}

namespace {

class LinearBlock : public Block {
 public:
  LinearBlock(ParamStore* store, SparseTable* t, bool normalize) : store_(store), t_(t), normalize_(normalize) {
    grad_.width = 1;
    grad_.table_rows = t->rows;
  }
  std::string kind() const override { return "linear"; }
  int out_dim() const override { return 1; }
  void Forward(const BatchView& b, std::span<const Mat* const>, Mat* out, const RunContext& ctx) override {
    out->resize(b.rows, 1);
    for (size_t r = 0; r < b.rows; ++r) {
      if (r + 1 < b.rows)  // the next row's weights: random lines, loaded while this row adds up
        for (const Feature& f : b.row(r + 1))
          if (f.index < t_->rows) PrefetchL1(t_->row(f.index));
      float s = 0;
      for (const Feature& f : b.row(r)) {
        RowRef rr = ResolveRow(*store_, *t_, f, ctx.training);
        if (rr.p) s += f.value * rr.p[0];
      }
      (*out)(r, 0) = s * Scale(b, r);
    }
  }
  void Backward(const BatchView& b, std::span<const Mat* const>, const Mat&, const Mat& dout, std::span<Mat* const>,
                const RunContext&) override {
    grad_.coalesce = b.rows > 1;
    for (size_t r = 0; r < b.rows; ++r) {
      const float go = dout(r, 0) * Scale(b, r);
      if (r + 1 < b.rows)
        for (const Feature& f : b.row(r + 1)) grad_.Prefetch(f.index);
      for (const Feature& f : b.row(r)) {
        if (f.field >= store_->num_fields || f.index >= t_->rows) continue;
        *grad_.Accumulate(f.index) += f.value * go;
      }
    }
  }
  void ZeroGrad() override { grad_.clear(); }
  void Grads(std::vector<DenseGradRef>*, std::vector<SparseGradRef>* s) override { s->push_back({"linear", t_, &grad_}); }

 private:
  float Scale(const BatchView& b, size_t r) const { return normalize_ ? std::sqrt(InstanceScale(b, r)) : 1.0f; }

  ParamStore* store_;
  SparseTable* t_;
  bool normalize_;
  SparseGrad grad_;
};

// Shared by plain (slots = 1) and field-aware (slots = F) embeddings: the
// output row holds, for each field f, `slots` pooled vectors of k.
class EmbeddingBlock : public Block {
 public:
  EmbeddingBlock(ParamStore* store, SparseTable* t, bool mean, std::string kind)
      : store_(store), t_(t), mean_(mean), kind_(std::move(kind)), counts_(store->num_fields) {
    grad_.width = t->slots * t->k;
    grad_.table_rows = t->rows;
  }
  std::string kind() const override { return kind_; }
  int out_dim() const override { return pooled_dim(); }

  void Forward(const BatchView& b, std::span<const Mat* const>, Mat* out, const RunContext& ctx) override {
    Pool(b, out, ctx, [](size_t, const float*) {});
  }

 protected:
  int pooled_dim() const { return int(store_->num_fields * t_->slots * t_->k); }
  // The pooled field vectors of each row into out (B x F*slots*k), calling
  // after_row(r, pooled row) while the row is still in L1.
  template <class AfterRow>
  void Pool(const BatchView& b, Mat* out, const RunContext& ctx, const AfterRow& after_row) {
    if (t_->k == 4) return ForwardK<4>(b, out, ctx, after_row);
    return ForwardK<0>(b, out, ctx, after_row);
  }

  // Backward given the gradient of each pooled field vector:
  // field_grad(r, field) points at its slots * k floats.
  template <class FieldGrad>
  void AccumulateGrads(const BatchView& b, const FieldGrad& field_grad) {
    const uint32_t width = t_->slots * t_->k;
    grad_.coalesce = b.rows > 1;
    for (size_t r = 0; r < b.rows; ++r) {
      // Two rows on, the direct-map entries; one row on (entries loaded by
      // now), the gradient values of rows already in the batch.
      if (r + 2 < b.rows)
        for (const Feature& f : b.row(r + 2)) grad_.Prefetch(f.index);
      if (r + 1 < b.rows)
        for (const Feature& f : b.row(r + 1)) grad_.PrefetchValues(f.index);
      if (mean_) {
        std::fill(counts_.begin(), counts_.end(), 0u);
        for (const Feature& f : b.row(r))
          if (f.field < store_->num_fields && f.index < t_->rows) ++counts_[f.field];
      }
      for (const Feature& f : b.row(r)) {
        if (f.field >= store_->num_fields || f.index >= t_->rows) continue;
        const float scale = mean_ ? f.value / float(counts_[f.field]) : f.value;
        const float* src = field_grad(r, f.field);
        float* g = grad_.Accumulate(f.index);
        for (uint32_t d = 0; d < width; ++d) g[d] += scale * src[d];
      }
    }
  }

 private:
  // K > 0: the latent dimension known at compile time (vectorised inner loop).
  template <int K, class AfterRow>
  void ForwardK(const BatchView& b, Mat* out, const RunContext& ctx, const AfterRow& after_row) {
    const uint32_t slots = t_->slots, k = K > 0 ? K : t_->k, width = slots * k;
    // Each row is zeroed when its turn comes (in L1 then), not the whole
    // batch up front: a B x F*k memset had evicted the first rows by the time
    // they were pooled.
    out->resize(b.rows, pooled_dim());
    // Start every feature's (random, likely uncached) row load a row ahead:
    // within the row itself the loads arrived late (a profile's top stall in
    // NFM). Plain embeddings: the weight line(s) only (the optimizer state is
    // read when the batch is applied). Big field-aware rows (deep models,
    // Adam): the weight lines of each slot, into L2.
    const size_t row_bytes = t_->row_stride() * sizeof(float);
    const size_t slot_bytes = t_->slot_stride() * sizeof(float), weight_bytes = k * sizeof(float);
    const auto prefetch_row = [&](std::span<const Feature> feats) {
      for (const Feature& f : feats)
        if (f.index < t_->rows) {
          const char* p = reinterpret_cast<const char*>(t_->row(f.index));
          if (slots == 1) {
            for (size_t off = 0; off < weight_bytes; off += 64) PrefetchL1(p + off);
          } else if (row_bytes <= 2048) {
            for (size_t off = 0; off < row_bytes; off += 64) PrefetchL1(p + off);
          } else {
            for (size_t slot = 0; slot < row_bytes; slot += slot_bytes)
              for (size_t off = 0; off < weight_bytes; off += 64) PrefetchL3(p + slot + off);
          }
        }
    };
    if (b.rows > 0) prefetch_row(b.row(0));
    for (size_t r = 0; r < b.rows; ++r) {
      float* o = out->row(r).data();
      std::fill_n(o, out->cols(), 0.0f);
      if (mean_) std::fill(counts_.begin(), counts_.end(), 0u);
      if (r + 1 < b.rows) prefetch_row(b.row(r + 1));
      for (const Feature& f : b.row(r)) {
        RowRef rr = ResolveRow(*store_, *t_, f, ctx.training);
        if (!rr.p) continue;
        float* e = o + size_t(f.field) * width;
        if (rr.slot_stride == k) {
          Axpy(f.value, rr.p, e, width);
        } else if constexpr (K == 4) {
          AxpySlots4(f.value, rr.p, rr.slot_stride, e, slots);
        } else {
          for (uint32_t g = 0; g < slots; ++g) Axpy(f.value, rr.p + g * rr.slot_stride, e + g * k, k);
        }
        if (mean_) ++counts_[f.field];
      }
      if (mean_)
        for (uint32_t f = 0; f < store_->num_fields; ++f)
          if (counts_[f] > 1)
            for (uint32_t d = 0; d < width; ++d) o[f * width + d] /= float(counts_[f]);
      after_row(r, o);
    }
  }

 public:
  void Backward(const BatchView& b, std::span<const Mat* const>, const Mat&, const Mat& dout, std::span<Mat* const>,
                const RunContext&) override {
    const size_t width = size_t(t_->slots) * t_->k;
    AccumulateGrads(b, [&](size_t r, uint32_t field) { return dout.row(r).data() + field * width; });
  }
  void ZeroGrad() override { grad_.clear(); }
  void Grads(std::vector<DenseGradRef>*, std::vector<SparseGradRef>* s) override { s->push_back({kind_, t_, &grad_}); }

 private:
  ParamStore* store_;
  SparseTable* t_;
  bool mean_;
  std::string kind_;
  std::vector<uint32_t> counts_;
  SparseGrad grad_;
};

// ---- interactions ----------------------------------------------------------

// K floats as one GCC vector (K = 4, 8, 16): element-wise +, -, * are the
// scalar IEEE operations lane by lane, so a loop over d written with them
// rounds exactly as the scalar loop (no contraction: -ffp-contract=off).
template <int K>
constexpr bool kVectorK = K == 4 || K == 8 || K == 16;
template <int K>
using VecK [[gnu::vector_size(K * sizeof(float))]] = float;
template <int K>
[[gnu::always_inline]] inline VecK<K> LoadVecK(const float* p) {
  VecK<K> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <int K>
[[gnu::always_inline]] inline void StoreVecK(VecK<K> v, float* p) {
  std::memcpy(p, &v, sizeof v);
}

// Σ_{f<g} x_{f,d} x_{g,d} in its O(F) form ½((Σ_f x_{f,d})² − Σ_f x_{f,d}²), for
// x laid out [field][k], into out[d] for every d < k (scratch: 2k floats; it is
// left holding Σ_f x_{f,d} and Σ_f x_{f,d}²). Fields outer, d inner: each d adds
// its fields in field order whatever the vector width. One function for
// FmBlock, NFM's fused input and the one-row LinearFmStep, which must round
// exactly alike. K > 0: k known at compile time, the sums held in registers
// (with k a runtime value GCC left the k = 8 sums scalar).
template <int K>
[[gnu::always_inline]] inline void FmPairSumsK(const float* __restrict x, uint32_t fields, uint32_t k_rt,
                                               float* __restrict scratch, float* __restrict out) {
  if constexpr (kVectorK<K>) {
    // The d loop as one K-lane vector: lane-wise IEEE ops, the same bytes.
    // As scalar arrays GCC 12 kept the k = 8 sums in general registers, a
    // vaddss and two moves per lane and field (the FM step's top cost).
    using V = VecK<K>;
    V s = {}, sq = {};
    for (uint32_t f = 0; f < fields; ++f) {
      const V v = LoadVecK<K>(x + size_t(f) * K);
      s += v;
      sq += v * v;
    }
    StoreVecK<K>(0.5f * (s * s - sq), out);
    StoreVecK<K>(s, scratch);
    StoreVecK<K>(sq, scratch + K);
    return;
  }
  const uint32_t k = K > 0 ? K : k_rt;
  float local[K > 0 ? 2 * K : 1];
  float* s = K > 0 ? local : scratch;  // K > 0: in registers, copied out at the end
  float* sq = s + k;
  for (uint32_t d = 0; d < k; ++d) s[d] = sq[d] = 0;
  for (uint32_t f = 0; f < fields; ++f) {
    const float* v = x + size_t(f) * k;
    for (uint32_t d = 0; d < k; ++d) {
      s[d] += v[d];
      sq[d] += v[d] * v[d];
    }
  }
  for (uint32_t d = 0; d < k; ++d) out[d] = 0.5f * (s[d] * s[d] - sq[d]);
  if constexpr (K > 0) std::copy_n(local, 2 * K, scratch);
}

void FmPairSums(const float* x, uint32_t fields, uint32_t k, float* scratch, float* out) {
  switch (k) {
    case 4: return FmPairSumsK<4>(x, fields, k, scratch, out);
    case 8: return FmPairSumsK<8>(x, fields, k, scratch, out);
    case 16: return FmPairSumsK<16>(x, fields, k, scratch, out);
    default: return FmPairSumsK<0>(x, fields, k, scratch, out);
  }
}

// dx[f,d] += go_d (Σ_g x_{g,d} − x_{f,d}): the gradient of FmPairSums, with
// go_d = go[per_dim ? d : 0]. scratch: k floats.
template <int K>
[[gnu::always_inline]] inline void FmPairSumsBackwardK(const float* __restrict x, uint32_t fields, uint32_t k_rt,
                                                       const float* __restrict go, bool per_dim,
                                                       float* __restrict scratch, float* __restrict dx) {
  if constexpr (kVectorK<K>) {  // as FmPairSumsK: the d loop as one vector, the same bytes
    using V = VecK<K>;
    V s = {};
    for (uint32_t f = 0; f < fields; ++f) s += LoadVecK<K>(x + size_t(f) * K);
    V gov;
    if (per_dim) {
      gov = LoadVecK<K>(go);
    } else {
      gov = V{} + go[0];
    }
    for (uint32_t f = 0; f < fields; ++f) {
      float* g = dx + size_t(f) * K;
      StoreVecK<K>(LoadVecK<K>(g) + gov * (s - LoadVecK<K>(x + size_t(f) * K)), g);
    }
    return;
  }
  const uint32_t k = K > 0 ? K : k_rt;
  float fixed[K > 0 ? K : 1] = {};
  float* s = K > 0 ? fixed : scratch;
  if constexpr (K == 0)
    for (uint32_t d = 0; d < k; ++d) s[d] = 0;
  for (uint32_t f = 0; f < fields; ++f)
    for (uint32_t d = 0; d < k; ++d) s[d] += x[size_t(f) * k + d];
  for (uint32_t f = 0; f < fields; ++f) {
    const float* v = x + size_t(f) * k;
    float* g = dx + size_t(f) * k;
    if (per_dim) {
      for (uint32_t d = 0; d < k; ++d) g[d] += go[d] * (s[d] - v[d]);
    } else {
      const float go0 = go[0];
      for (uint32_t d = 0; d < k; ++d) g[d] += go0 * (s[d] - v[d]);
    }
  }
}

void FmPairSumsBackward(const float* x, uint32_t fields, uint32_t k, const float* go, bool per_dim, float* scratch,
                        float* dx) {
  switch (k) {
    case 4: return FmPairSumsBackwardK<4>(x, fields, k, go, per_dim, scratch, dx);
    case 8: return FmPairSumsBackwardK<8>(x, fields, k, go, per_dim, scratch, dx);
    case 16: return FmPairSumsBackwardK<16>(x, fields, k, go, per_dim, scratch, dx);
    default: return FmPairSumsBackwardK<0>(x, fields, k, go, per_dim, scratch, dx);
  }
}

class FmBlock : public Block {
 public:
  FmBlock(uint32_t fields, uint32_t k, bool per_dim, bool normalize = false)
      : F_(fields), k_(k), per_dim_(per_dim), normalize_(normalize), sum_(k), scratch_(2 * size_t(k)), go_(k) {}
  std::string kind() const override { return per_dim_ ? "bi_interaction" : "fm"; }
  int out_dim() const override { return per_dim_ ? int(k_) : 1; }
  void Forward(const BatchView& b, std::span<const Mat* const> in, Mat* out, const RunContext&) override {
    const Mat& e = *in[0];
    out->resize(b.rows, out_dim());
    for (size_t r = 0; r < b.rows; ++r) {
      const float* x = e.row(r).data();
      FmPairSums(x, F_, k_, scratch_.data(), sum_.data());
      if (per_dim_) {
        const float scale = normalize_ ? InstanceScale(b, r) : 1.0f;
        for (uint32_t d = 0; d < k_; ++d) (*out)(r, d) = scale * sum_[d];
      } else {
        float t = 0;
        for (uint32_t d = 0; d < k_; ++d) t += sum_[d];
        (*out)(r, 0) = normalize_ ? t * InstanceScale(b, r) : t;
      }
    }
  }
  void Backward(const BatchView& b, std::span<const Mat* const> in, const Mat&, const Mat& dout,
                std::span<Mat* const> din, const RunContext&) override {
    const Mat& e = *in[0];
    Mat& de = *din[0];
    for (size_t r = 0; r < b.rows; ++r) {
      const float* x = e.row(r).data();
      float* g = de.row(r).data();
      const float scale = normalize_ ? InstanceScale(b, r) : 1.0f;
      for (uint32_t d = 0; d < (per_dim_ ? k_ : 1); ++d) go_[d] = scale * dout(r, d);
      FmPairSumsBackward(x, F_, k_, go_.data(), per_dim_, scratch_.data(), g);
    }
  }

 private:
  uint32_t F_, k_;
  bool per_dim_, normalize_;
  std::vector<float> sum_, scratch_, go_;
};

// NFM's input: embedding pooling and bi-interaction in one block, so a batch's
// pooled vectors are summed while each row is in L1 and the backward pass
// writes no B x F*k gradient matrix (the two blocks took 33% of an NFM epoch,
// most of it those passes). The same floats as MakeEmbeddingPool followed by
// MakeBiInteraction, operation for operation (blocks_test compares them).
class EmbeddingBiInteractionBlock : public EmbeddingBlock {
 public:
  EmbeddingBiInteractionBlock(ParamStore* store, SparseTable* t, bool mean, bool normalize)
      : EmbeddingBlock(store, t, mean, "embedding+bi_interaction"),
        F_(store->num_fields), k_(t->k), normalize_(normalize), scratch_(2 * size_t(t->k)), go_(t->k), dx_(t->k) {}
  int out_dim() const override { return int(k_); }
  void Forward(const BatchView& b, std::span<const Mat* const>, Mat* out, const RunContext& ctx) override {
    out->resize(b.rows, k_);
    sums_.resize(b.rows, k_);
    Pool(b, &pooled_, ctx, [&](size_t r, const float* x) {
      float* o = out->row(r).data();
      FmPairSums(x, F_, k_, scratch_.data(), o);  // leaves Σ_f x_f in scratch_[0, k)
      std::copy_n(scratch_.data(), k_, sums_.row(r).data());
      if (normalize_) {
        const float scale = InstanceScale(b, r);
        for (uint32_t d = 0; d < k_; ++d) o[d] = scale * o[d];
      }
    });
  }
  // d pooled_{f,d} = go_d (Σ_g x_{g,d} − x_{f,d}) as FmPairSumsBackward gives it,
  // one field vector at a time, straight into the row's gradient entry.
  void Backward(const BatchView& b, std::span<const Mat* const>, const Mat&, const Mat& dout, std::span<Mat* const>,
                const RunContext&) override {
    size_t row_of_go = size_t(-1);
    AccumulateGrads(b, [&](size_t r, uint32_t field) {
      if (r != row_of_go) {
        const float scale = normalize_ ? InstanceScale(b, r) : 1.0f;
        for (uint32_t d = 0; d < k_; ++d) go_[d] = scale * dout(r, d);
        row_of_go = r;
      }
      const float* x = pooled_.row(r).data() + size_t(field) * k_;
      const float* s = sums_.row(r).data();
      for (uint32_t d = 0; d < k_; ++d) dx_[d] = go_[d] * (s[d] - x[d]);
      return dx_.data();
    });
  }

 private:
  uint32_t F_, k_;
  bool normalize_;
  Mat pooled_, sums_;  // the batch's pooled field vectors (B x F*k) and their sums (B x k)
  std::vector<float> scratch_, go_, dx_;
};

class FfmBlock : public Block {
 public:
  FfmBlock(uint32_t fields, uint32_t k, bool normalize) : F_(fields), k_(k), normalize_(normalize) {}
  std::string kind() const override { return "ffm"; }
  int out_dim() const override { return 1; }
  void Forward(const BatchView& b, std::span<const Mat* const> in, Mat* out, const RunContext&) override {
    out->resize(b.rows, 1);
    for (size_t r = 0; r < b.rows; ++r) {
      const float t = k_ == 4 ? RowScore<4>(in[0]->row(r).data()) : RowScore<0>(in[0]->row(r).data());
      (*out)(r, 0) = normalize_ ? t * InstanceScale(b, r) : t;
    }
  }
  void Backward(const BatchView& b, std::span<const Mat* const> in, const Mat&, const Mat& dout,
                std::span<Mat* const> din, const RunContext&) override {
    for (size_t r = 0; r < b.rows; ++r) {
      const float go = normalize_ ? dout(r, 0) * InstanceScale(b, r) : dout(r, 0);
      if (k_ == 4) {
        RowGrad<4>(in[0]->row(r).data(), go, din[0]->row(r).data());
      } else {
        RowGrad<0>(in[0]->row(r).data(), go, din[0]->row(r).data());
      }
    }
  }

 private:
  // K > 0: k known at compile time, so the length-k loops vectorise.
  template <int K>
  float RowScore(const float* x) const {
#ifdef __SSE__
    if constexpr (K == 4) {  // one 4-float vector per pair, one horizontal sum per row
      // Pair (f, g) adds into accumulator g mod 4: four add chains, not one
      // (FusedFfm's forward sums in this order, bytes the same).
      const size_t fk = size_t(F_) * 4;
      __m128 acc[4] = {_mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps()};
      for (uint32_t f = 0; f < F_; ++f)
        for (uint32_t g = f + 1; g < F_; ++g) {
          const __m128 pair = _mm_mul_ps(_mm_loadu_ps(x + f * fk + g * 4), _mm_loadu_ps(x + g * fk + f * 4));
          acc[g & 3] = _mm_add_ps(acc[g & 3], pair);
        }
      return HorizontalSum4(_mm_add_ps(_mm_add_ps(acc[0], acc[1]), _mm_add_ps(acc[2], acc[3])));
    }
#endif
    const uint32_t k = K > 0 ? K : k_;
    const size_t fk = size_t(F_) * k;
    float t = 0;
    for (uint32_t f = 0; f < F_; ++f)
      for (uint32_t g = f + 1; g < F_; ++g) {
        const float* a = x + f * fk + g * k;  // e_{f,g}
        const float* c = x + g * fk + f * k;  // e_{g,f}
        for (uint32_t d = 0; d < k; ++d) t += a[d] * c[d];
      }
    return t;
  }
  template <int K>
  void RowGrad(const float* x, float go, float* gx) const {
#ifdef __SSE__
    if constexpr (K == 4) {
      const size_t fk = size_t(F_) * 4;
      const __m128 vg = _mm_set1_ps(go);
      for (uint32_t f = 0; f < F_; ++f)
        for (uint32_t g = f + 1; g < F_; ++g) {
          const size_t a = f * fk + g * 4, c = g * fk + f * 4;
          const __m128 xa = _mm_loadu_ps(x + a), xc = _mm_loadu_ps(x + c);
          _mm_storeu_ps(gx + a, _mm_add_ps(_mm_loadu_ps(gx + a), _mm_mul_ps(vg, xc)));
          _mm_storeu_ps(gx + c, _mm_add_ps(_mm_loadu_ps(gx + c), _mm_mul_ps(vg, xa)));
        }
      return;
    }
#endif
    const uint32_t k = K > 0 ? K : k_;
    const size_t fk = size_t(F_) * k;
    for (uint32_t f = 0; f < F_; ++f)
      for (uint32_t g = f + 1; g < F_; ++g) {
        const size_t a = f * fk + g * k, c = g * fk + f * k;
        for (uint32_t d = 0; d < k; ++d) {
          gx[a + d] += go * x[c + d];
          gx[c + d] += go * x[a + d];
        }
      }
  }

  uint32_t F_, k_;
  bool normalize_;
};

class FieldPairBlock : public Block {
 public:
  FieldPairBlock(uint32_t fields, uint32_t k, bool sum) : F_(fields), k_(k), sum_(sum) {}
  std::string kind() const override { return sum_ ? "field_pairs_sum" : "field_pairs"; }
  int out_dim() const override { return sum_ ? int(k_) : int(F_ * (F_ - 1) / 2 * k_); }
  void Forward(const BatchView& b, std::span<const Mat* const> in, Mat* out, const RunContext&) override {
    const Mat& e = *in[0];
    out->setZero(b.rows, out_dim());
    const size_t fk = size_t(F_) * k_;
    for (size_t r = 0; r < b.rows; ++r) {
      const float* x = e.row(r).data();
      float* o = out->row(r).data();
      size_t p = 0;
      for (uint32_t f = 0; f < F_; ++f)
        for (uint32_t g = f + 1; g < F_; ++g, ++p) {
          const float* a = x + f * fk + g * k_;
          const float* c = x + g * fk + f * k_;
          float* dst = sum_ ? o : o + p * k_;
          for (uint32_t d = 0; d < k_; ++d) dst[d] += a[d] * c[d];
        }
    }
  }
  void Backward(const BatchView& b, std::span<const Mat* const> in, const Mat&, const Mat& dout,
                std::span<Mat* const> din, const RunContext&) override {
    const Mat& e = *in[0];
    const size_t fk = size_t(F_) * k_;
    for (size_t r = 0; r < b.rows; ++r) {
      const float* x = e.row(r).data();
      const float* go = dout.row(r).data();
      float* gx = din[0]->row(r).data();
      size_t p = 0;
      for (uint32_t f = 0; f < F_; ++f)
        for (uint32_t g = f + 1; g < F_; ++g, ++p) {
          const size_t a = f * fk + g * k_, c = g * fk + f * k_;
          const float* gp = sum_ ? go : go + p * k_;
          for (uint32_t d = 0; d < k_; ++d) {
            gx[a + d] += gp[d] * x[c + d];
            gx[c + d] += gp[d] * x[a + d];
          }
        }
    }
  }

 private:
  uint32_t F_, k_;
  bool sum_;
};

// Element-wise kernels over k floats, with k known at compile time (K > 0,
// Eigen vectorises the fixed size) or not (K = 0).
template <int K>
using VecMap = Eigen::Map<Eigen::Array<float, (K > 0 ? K : Eigen::Dynamic), 1>>;
template <int K>
using ConstVecMap = Eigen::Map<const Eigen::Array<float, (K > 0 ? K : Eigen::Dynamic), 1>>;

// NFFM's input layer in one pass: the field-aware embedding of each row and
// its pair products e_{f,g} ⊙ e_{g,f} (f < g), without the B x F²k matrix of
// the two-block form (which costs more memory traffic than the products).
// A field with one feature is read in place from its table row; fields with
// several are pooled into a per-row scratch. The same operations as
// MakeFieldAwareEmbedding followed by MakeFieldPairProducts (tested equal).
class FieldPairEmbeddingBlock : public Block {
 public:
  FieldPairEmbeddingBlock(ParamStore* store, SparseTable* t, bool mean, bool sum)
      : store_(store), t_(t), mean_(mean), sum_(sum), F_(store->num_fields), k_(t->k), views_(F_), counts_(F_) {
    grad_.width = t->slots * t->k;
    grad_.table_rows = t->rows;
  }
  std::string kind() const override { return sum_ ? "field_aware_embedding+pairs_sum" : "field_aware_embedding+pairs"; }
  int out_dim() const override { return sum_ ? int(k_) : int(F_ * (F_ - 1) / 2 * k_); }

  void Forward(const BatchView& b, std::span<const Mat* const>, Mat* out, const RunContext& ctx) override {
    switch (k_) {
      case 4: return ForwardK<4>(b, out, ctx);
      case 8: return ForwardK<8>(b, out, ctx);
      case 16: return ForwardK<16>(b, out, ctx);
      default: return ForwardK<0>(b, out, ctx);
    }
  }
  void Backward(const BatchView& b, std::span<const Mat* const>, const Mat&, const Mat& dout, std::span<Mat* const>,
                const RunContext& ctx) override {
    switch (k_) {
      case 4: return BackwardK<4>(b, dout, ctx);
      case 8: return BackwardK<8>(b, dout, ctx);
      case 16: return BackwardK<16>(b, dout, ctx);
      default: return BackwardK<0>(b, dout, ctx);
    }
  }
  void ZeroGrad() override { grad_.clear(); }
  void Grads(std::vector<DenseGradRef>*, std::vector<SparseGradRef>* s) override {
    s->push_back({"field_aware_embedding", t_, &grad_});
  }

 private:
  // Field f's F target-field vectors: slot g at p + g * stride, times scale.
  struct View {
    const float* p = nullptr;
    uint32_t stride = 0;
    float scale = 0;
  };

  size_t Pair(uint32_t f, uint32_t g) const { return size_t(f) * F_ - size_t(f) * (f + 1) / 2 + (g - f - 1); }

  // Starts loading the weights (not the optimizer state) of row r's features
  // into L2 (a row touches F² lines: more than L1 holds).
  void Prefetch(const BatchView& b, size_t r) const {
    if (r >= b.rows) return;
    const uint32_t ss = t_->slot_stride();
    for (const Feature& f : b.row(r))
      if (f.index < t_->rows) {
        const char* p = reinterpret_cast<const char*>(t_->row(f.index));
        for (uint32_t g = 0; g < t_->slots; ++g) PrefetchL3(p + size_t(g) * ss * sizeof(float));
      }
  }

  // Fills views_ for row r (pooling multi-feature fields into scratch_).
  void Gather(const BatchView& b, size_t r, bool training) {
    const uint32_t width = F_ * k_;
    std::fill(counts_.begin(), counts_.end(), 0u);
    for (const Feature& f : b.row(r)) {
      const RowRef rr = ResolveRow(*store_, *t_, f, training);
      if (!rr.p) continue;
      View& v = views_[f.field];
      if (counts_[f.field]++ == 0) {
        v = View{rr.p, rr.slot_stride, f.value};
        continue;
      }
      if (scratch_.size() < size_t(F_) * width) scratch_.resize(size_t(F_) * width);
      float* e = scratch_.data() + size_t(f.field) * width;
      if (v.p != e) {  // second feature of the field: start its pooled vector
        std::fill(e, e + width, 0.0f);
        for (uint32_t g = 0; g < F_; ++g) Axpy(v.scale, v.p + size_t(g) * v.stride, e + g * k_, k_);
        v = View{e, k_, 1.0f};
      }
      for (uint32_t g = 0; g < F_; ++g) Axpy(f.value, rr.p + size_t(g) * rr.slot_stride, e + g * k_, k_);
    }
    for (uint32_t f = 0; f < F_; ++f) {
      if (counts_[f] == 0) views_[f].p = nullptr;
      if (mean_ && counts_[f] > 1) {
        float* e = scratch_.data() + size_t(f) * width;
        for (uint32_t d = 0; d < width; ++d) e[d] /= float(counts_[f]);
      }
    }
  }

  template <int K>
  void ForwardK(const BatchView& b, Mat* out, const RunContext& ctx) {
    const uint32_t k = K > 0 ? K : k_;
    if (sum_) {
      out->setZero(b.rows, out_dim());
    } else {
      out->resize(b.rows, out_dim());
    }
    Prefetch(b, 0);
    for (size_t r = 0; r < b.rows; ++r) {
      Gather(b, r, ctx.training);
      Prefetch(b, r + 1);
      float* o = out->row(r).data();
      for (uint32_t f = 0; f < F_; ++f) {
        const View& vf = views_[f];
        for (uint32_t g = f + 1; g < F_; ++g) {
          float* __restrict dst = sum_ ? o : o + Pair(f, g) * k;
          const View& vg = views_[g];
          if (!vf.p || !vg.p) {
            if (!sum_) std::fill(dst, dst + k, 0.0f);
            continue;
          }
          const float* __restrict a = vf.p + size_t(g) * vf.stride;
          const float* __restrict c = vg.p + size_t(f) * vg.stride;
          const float sa = vf.scale, sc = vg.scale;
          VecMap<K> out_pair(dst, k);
          const ConstVecMap<K> va(a, k), vc(c, k);
          if (sum_) {
            out_pair += (sa * va) * (sc * vc);
          } else if (sa == 1.0f && sc == 1.0f) {  // one-hot: 1 * a == a, the same bytes
            out_pair = va * vc;
          } else {
            out_pair = (sa * va) * (sc * vc);
          }
        }
      }
    }
  }

  template <int K>
  void BackwardK(const BatchView& b, const Mat& dout, const RunContext& ctx) {
    const uint32_t k = K > 0 ? K : k_, width = F_ * k_;
    grad_.coalesce = b.rows > 1;
    // Every occurrence's gradient entry first, so the main pass can prefetch
    // the next row's entries (random rows of a buffer larger than the cache).
    const uint64_t first = b.offsets[0];
    entry_.assign(b.offsets[b.rows] - first, kNoEntry);
    for (size_t r = 0; r < b.rows; ++r)
      for (uint64_t i = b.offsets[r]; i < b.offsets[r + 1]; ++i) {
        const Feature& ft = b.features[i];
        if (ft.field < F_ && ft.index < t_->rows)
          entry_[i - first] = uint32_t((grad_.Accumulate(ft.index) - grad_.values.data()) / width);
      }
    for (size_t r = 0; r < b.rows; ++r) {
      Gather(b, r, ctx.training);
      Prefetch(b, r + 1);
      if (r + 1 < b.rows)
        for (uint64_t i = b.offsets[r + 1]; i < b.offsets[r + 2]; ++i)
          if (entry_[i - first] != kNoEntry) {
            const char* p = reinterpret_cast<const char*>(grad_.values.data() + size_t(entry_[i - first]) * width);
            for (size_t off = 0; off < width * sizeof(float); off += 64) PrefetchWrite(p + off);
          }
      const float* go = dout.row(r).data();
      for (uint64_t i = b.offsets[r]; i < b.offsets[r + 1]; ++i) {
        if (entry_[i - first] == kNoEntry) continue;
        const Feature& ft = b.features[i];
        const uint32_t f = ft.field;
        const float s = mean_ ? ft.value / float(counts_[f]) : ft.value;
        float* grad = grad_.values.data() + size_t(entry_[i - first]) * width;
        for (uint32_t g = 0; g < F_; ++g) {
          const View& vg = views_[g];
          if (g == f || !vg.p) continue;
          const float* __restrict dp = sum_ ? go : go + (f < g ? Pair(f, g) : Pair(g, f)) * k;
          const float* __restrict c = vg.p + size_t(f) * vg.stride;  // e_{g,f} before its scale
          const float sc = vg.scale;
          VecMap<K> dst(grad + size_t(g) * k, k);
          const ConstVecMap<K> vdp(dp, k), vc(c, k);
          if (sc == 1.0f && s == 1.0f) {
            dst += vdp * vc;
          } else {
            dst += s * (vdp * (sc * vc));
          }
        }
      }
    }
  }

  static constexpr uint32_t kNoEntry = ~0u;
  ParamStore* store_;
  SparseTable* t_;
  bool mean_, sum_;
  uint32_t F_, k_;
  std::vector<View> views_;
  std::vector<uint32_t> counts_;
  std::vector<float> scratch_;  // pooled vectors of multi-feature fields, [f][g][k]
  std::vector<uint32_t> entry_;  // Backward: gradient entry of each feature occurrence
  SparseGrad grad_;
};

// ---- dense blocks ----------------------------------------------------------

class BiasBlock : public Block {
 public:
  explicit BiasBlock(DenseParam* b) : b_(b), grad_(1, 0.0f) {}
  std::string kind() const override { return "bias"; }
  int out_dim() const override { return 1; }
  void Forward(const BatchView& b, std::span<const Mat* const>, Mat* out, const RunContext&) override {
    out->setConstant(b.rows, 1, b_->w[0]);
  }
  void Backward(const BatchView&, std::span<const Mat* const>, const Mat&, const Mat& dout, std::span<Mat* const>,
                const RunContext&) override {
    grad_[0] += dout.sum();
  }
  void ZeroGrad() override { grad_[0] = 0; }
  void Grads(std::vector<DenseGradRef>* d, std::vector<SparseGradRef>*) override { d->push_back({"bias", b_, &grad_}); }

 private:
  DenseParam* b_;
  FloatVec grad_;
};

class DenseBlock : public Block {
 public:
  DenseBlock(DenseParam* w, DenseParam* b, int in, int out, std::string name)
      : w_(w), b_(b), in_(in), out_(out), name_(std::move(name)), gw_(size_t(in) * out, 0.0f), gb_(out, 0.0f) {}
  std::string kind() const override { return "dense"; }
  int out_dim() const override { return out_; }
  // Row-major products through model/gemm.h: y = x·W + b; dW += xᵀ·dy; dx += dy·Wᵀ.
  void Forward(const BatchView&, std::span<const Mat* const> in, Mat* out, const RunContext&) override {
    const Mat& x = *in[0];
    const int rows = int(x.rows());
    out->resize(rows, out_);
    for (int r = 0; r < rows; ++r) std::copy_n(b_->w.data(), out_, out->row(r).data());
    Sgemm(false, false, rows, out_, in_, 1.0f, x.data(), in_, w_->w.data(), out_, 1.0f, out->data(), out_);
  }
  void Backward(const BatchView&, std::span<const Mat* const> in, const Mat&, const Mat& dout,
                std::span<Mat* const> din, const RunContext&) override {
    const Mat& x = *in[0];
    const int rows = int(x.rows());
    Sgemm(true, false, in_, out_, rows, 1.0f, x.data(), in_, dout.data(), out_, 1.0f, gw_.data(), out_);
    Eigen::Map<Eigen::RowVectorXf> GB(gb_.data(), out_);
    GB += dout.colwise().sum();
    if (din[0]) Sgemm(false, true, rows, in_, out_, 1.0f, dout.data(), out_, w_->w.data(), out_, 1.0f, din[0]->data(), in_);
  }
  void ZeroGrad() override {
    std::fill(gw_.begin(), gw_.end(), 0.0f);
    std::fill(gb_.begin(), gb_.end(), 0.0f);
  }
  void Grads(std::vector<DenseGradRef>* d, std::vector<SparseGradRef>*) override {
    d->push_back({name_ + ".w", w_, &gw_});
    d->push_back({name_ + ".b", b_, &gb_});
  }

 private:
  DenseParam *w_, *b_;
  int in_, out_;
  std::string name_;
  FloatVec gw_, gb_;
};

class ActivationBlock : public Block {
 public:
  ActivationBlock(Activation a, int dim) : a_(a), dim_(dim) {}
  std::string kind() const override { return std::string(Name(a_)); }
  int out_dim() const override { return dim_; }
  void Forward(const BatchView&, std::span<const Mat* const> in, Mat* out, const RunContext&) override {
    const Mat& x = *in[0];
    switch (a_) {
      case Activation::kRelu: *out = x.cwiseMax(0.0f); break;
      case Activation::kTanh: *out = x.array().tanh(); break;
      case Activation::kSigmoid: *out = (1.0f + (-x.array()).exp()).inverse(); break;
      case Activation::kIdentity: *out = x; break;
    }
  }
  void Backward(const BatchView&, std::span<const Mat* const> in, const Mat& out, const Mat& dout,
                std::span<Mat* const> din, const RunContext&) override {
    Mat& g = *din[0];
    switch (a_) {
      case Activation::kRelu: g.array() += dout.array() * (in[0]->array() > 0.0f).cast<float>(); break;
      case Activation::kTanh: g.array() += dout.array() * (1.0f - out.array().square()); break;
      case Activation::kSigmoid: g.array() += dout.array() * out.array() * (1.0f - out.array()); break;
      case Activation::kIdentity: g += dout; break;
    }
  }

 private:
  Activation a_;
  int dim_;
};

class DropoutBlock : public Block {
 public:
  DropoutBlock(float p, int dim, uint64_t salt) : p_(p), dim_(dim), salt_(salt) {}
  std::string kind() const override { return "dropout"; }
  int out_dim() const override { return dim_; }
  void Forward(const BatchView&, std::span<const Mat* const> in, Mat* out, const RunContext& ctx) override {
    const Mat& x = *in[0];
    if (!ctx.training || p_ <= 0.0f) {
      *out = x;
      mask_.resize(0, 0);
      return;
    }
    // Inverted dropout; the mask is a pure function of (batch seed, block, position),
    // so a resumed run draws the same masks as an uninterrupted one.
    mask_.resize(x.rows(), x.cols());
    const uint64_t base = Mix64(ctx.seed ^ Mix64(salt_));
    const float keep_scale = 1.0f / (1.0f - p_);
    const uint64_t threshold = uint64_t(double(p_) * 18446744073709551615.0);
    for (Eigen::Index i = 0; i < mask_.size(); ++i)
      mask_.data()[i] = Mix64(base + uint64_t(i)) >= threshold ? keep_scale : 0.0f;
    *out = x.cwiseProduct(mask_);
  }
  void Backward(const BatchView&, std::span<const Mat* const>, const Mat&, const Mat& dout,
                std::span<Mat* const> din, const RunContext&) override {
    if (mask_.size() == 0) {
      *din[0] += dout;
    } else {
      din[0]->array() += dout.array() * mask_.array();
    }
  }

 private:
  float p_;
  int dim_;
  uint64_t salt_;
  Mat mask_;
};

class BatchNormBlock : public Block {
 public:
  BatchNormBlock(DenseParam* gamma, DenseParam* beta, DenseParam* rm, DenseParam* rv, int dim, std::string name)
      : gamma_(gamma), beta_(beta), rm_(rm), rv_(rv), dim_(dim), name_(std::move(name)), gg_(dim, 0.0f),
        gb_(dim, 0.0f) {}
  std::string kind() const override { return "batch_norm"; }
  int out_dim() const override { return dim_; }
  void Forward(const BatchView&, std::span<const Mat* const> in, Mat* out, const RunContext& ctx) override {
    const Mat& x = *in[0];
    Eigen::Map<const Eigen::RowVectorXf> gamma(gamma_->w.data(), dim_), beta(beta_->w.data(), dim_);
    Eigen::Map<Eigen::RowVectorXf> rm(rm_->w.data(), dim_), rv(rv_->w.data(), dim_);
    batch_stats_ = ctx.training;
    if (ctx.training) {
      mean_ = x.colwise().mean();
      xhat_ = x.rowwise() - mean_;
      Eigen::RowVectorXf var = xhat_.array().square().colwise().mean();
      inv_std_ = (var.array() + kEps).rsqrt();
      xhat_.array().rowwise() *= inv_std_.array();
      rm = kMomentum * rm + (1 - kMomentum) * mean_;
      rv = kMomentum * rv + (1 - kMomentum) * var;
    } else {
      inv_std_ = (rv.array() + kEps).rsqrt();
      xhat_ = x.rowwise() - rm;
      xhat_.array().rowwise() *= inv_std_.array();
    }
    *out = xhat_.array().rowwise() * gamma.array();
    out->rowwise() += beta;
  }
  void Backward(const BatchView&, std::span<const Mat* const>, const Mat&, const Mat& dout,
                std::span<Mat* const> din, const RunContext&) override {
    Eigen::Map<const Eigen::RowVectorXf> gamma(gamma_->w.data(), dim_);
    Eigen::Map<Eigen::RowVectorXf> gg(gg_.data(), dim_), gb(gb_.data(), dim_);
    gg += (dout.array() * xhat_.array()).matrix().colwise().sum();
    gb += dout.colwise().sum();
    if (!batch_stats_) {  // running statistics are constants: a per-unit affine map
      din[0]->array() += dout.array().rowwise() * (gamma.array() * inv_std_.array());
      return;
    }
    // dx = γ/σ · (dy − mean(dy) − x̂ · mean(dy ⊙ x̂))
    const float n = float(dout.rows());
    Eigen::RowVectorXf mean_dy = dout.colwise().sum() / n;
    Eigen::RowVectorXf mean_dyx = (dout.array() * xhat_.array()).matrix().colwise().sum() / n;
    Mat t = dout.rowwise() - mean_dy;
    t.array() -= xhat_.array().rowwise() * mean_dyx.array();
    t.array().rowwise() *= (gamma.array() * inv_std_.array());
    *din[0] += t;
  }
  void ZeroGrad() override {
    std::fill(gg_.begin(), gg_.end(), 0.0f);
    std::fill(gb_.begin(), gb_.end(), 0.0f);
  }
  void Grads(std::vector<DenseGradRef>* d, std::vector<SparseGradRef>*) override {
    d->push_back({name_ + ".gamma", gamma_, &gg_});
    d->push_back({name_ + ".beta", beta_, &gb_});
  }

 private:
  static constexpr float kEps = 1e-5f, kMomentum = 0.9f;
  DenseParam *gamma_, *beta_, *rm_, *rv_;
  int dim_;
  std::string name_;
  FloatVec gg_, gb_;
  Eigen::RowVectorXf mean_, inv_std_;
  Mat xhat_;
  bool batch_stats_ = false;  // the last Forward normalised with batch statistics
};

class ConcatBlock : public Block {
 public:
  explicit ConcatBlock(std::vector<int> dims) : dims_(std::move(dims)) {
    for (int d : dims_) total_ += d;
  }
  std::string kind() const override { return "concat"; }
  int out_dim() const override { return total_; }
  void Forward(const BatchView& b, std::span<const Mat* const> in, Mat* out, const RunContext&) override {
    out->resize(b.rows, total_);
    int col = 0;
    for (size_t i = 0; i < dims_.size(); ++i) {
      out->middleCols(col, dims_[i]) = *in[i];
      col += dims_[i];
    }
  }
  void Backward(const BatchView&, std::span<const Mat* const>, const Mat&, const Mat& dout,
                std::span<Mat* const> din, const RunContext&) override {
    int col = 0;
    for (size_t i = 0; i < dims_.size(); ++i) {
      if (din[i]) *din[i] += dout.middleCols(col, dims_[i]);
      col += dims_[i];
    }
  }

 private:
  std::vector<int> dims_;
  int total_ = 0;
};

class SumBlock : public Block {
 public:
  explicit SumBlock(int dim) : dim_(dim) {}
  std::string kind() const override { return "sum"; }
  int out_dim() const override { return dim_; }
  void Forward(const BatchView&, std::span<const Mat* const> in, Mat* out, const RunContext&) override {
    *out = *in[0];
    for (size_t i = 1; i < in.size(); ++i) *out += *in[i];
  }
  void Backward(const BatchView&, std::span<const Mat* const>, const Mat&, const Mat& dout,
                std::span<Mat* const> din, const RunContext&) override {
    for (Mat* d : din)
      if (d) *d += dout;
  }

 private:
  int dim_;
};

}  // namespace

// ---- loss --------------------------------------------------------------------

float LossBlock::RowPredict(LossType loss_type, double z) {
  return loss_type == LossType::kSquared ? float(z) : float(1.0 / (1.0 + std::exp(-z)));
}

float LossBlock::RowForward(LossType loss_type, double z, double y, double* row_loss) {
  if (loss_type == LossType::kSquared) {
    *row_loss = 0.5 * (z - y) * (z - y);
    return float(z);
  }
  const double pred = 1.0 / (1.0 + std::exp(-z));
  if (loss_type == LossType::kLogloss) {
    // softplus(z) − y z, stable for large |z|.
    *row_loss = std::max(z, 0.0) + std::log1p(std::exp(-std::fabs(z))) - y * z;
  } else {
    *row_loss = 0.5 * (pred - y) * (pred - y);
  }
  return float(pred);
}

float LossBlock::RowGrad(LossType loss_type, float p, float y, float w) {
  float d = p - y;  // logloss through σ, and squared error through identity
  if (loss_type == LossType::kRate) d *= p * (1 - p);
  return w * d;
}

void LossBlock::Forward(const BatchView& b, std::span<const Mat* const> in, Mat* out, const RunContext&) {
  const Mat& phi = *in[0];
  out->resize(b.rows, 1);
  loss_sum_ = weight_sum_ = 0;
  for (size_t r = 0; r < b.rows; ++r) {
    const double z = phi(r, 0);
    const double w = use_weights_ ? WeightOf(b, r) : 1.0;
    const double y = b.labels ? b.labels[r] : 0.0;
    double loss;
    const float pred = RowForward(loss_, z, y, &loss);
    (*out)(r, 0) = pred;
    loss_sum_ += w * loss;
    weight_sum_ += w;
  }
}

void LossBlock::Backward(const BatchView& b, std::span<const Mat* const>, const Mat& out, const Mat&,
                         std::span<Mat* const> din, const RunContext&) {
  Mat& g = *din[0];
  for (size_t r = 0; r < b.rows; ++r) {
    const float w = use_weights_ ? WeightOf(b, r) : 1.0f;
    const float y = b.labels ? b.labels[r] : 0.0f;
    g(r, 0) += RowGrad(loss_, out(r, 0), y, w);
  }
}

// ---- one-row lr / fm step ------------------------------------------------------

LinearFmStep::LinearFmStep(DenseParam* bias, SparseTable* linear, SparseTable* embedding, uint32_t fields,
                           bool normalize, bool mean, LossType loss, bool use_weights)
    : bias_(bias), lin_(linear), emb_(embedding), F_(fields), normalize_(normalize), mean_(mean), loss_(loss),
      use_weights_(use_weights) {
  if (emb_) {
    e_.resize(size_t(F_) * emb_->k);
    de_.resize(size_t(F_) * emb_->k);
    scratch_.resize(3 * size_t(emb_->k));
  }
}

bool LinearFmStep::Step(const BatchView& b, const OptimizerConfig& c, uint64_t step, std::span<const Feature> next,
                        double* loss_sum, double* weight_sum) {
  if (b.rows != 1 || c.type == OptimizerType::kAdam || (emb_ && mean_)) return false;
  if (emb_ && emb_->k == 4) return StepK<4>(b, c, step, next, loss_sum, weight_sum);
  if (emb_ && emb_->k == 8) return StepK<8>(b, c, step, next, loss_sum, weight_sum);
  return StepK<0>(b, c, step, next, loss_sum, weight_sum);
}

// bias + linear (+ embedding -> fm) -> sum, expression by expression as the
// graph computes it. `resolve(table, f)` gives a feature's row (training: the
// trained rows; inference: blocks.h ResolveRow's unseen rule). Leaves the
// pooled field vectors in e_ (Step's backward reads them).
// Always inlined (GCC kept it out of line): lr epochs 3.31M rows/s against
// 3.15M out of line (median of 9, 2M rows, 1 thread).
template <int K, class Resolve>
[[gnu::always_inline]] inline float LinearFmStep::ForwardK(std::span<const Feature> row, const Resolve& resolve,
                                                          float bias, float* inst_out, float* lin_scale_out) {
  const uint32_t F = F_, k = K > 0 ? K : (emb_ ? emb_->k : 0);
  float lin = 0;
  for (const Feature& f : row) {
    const RowRef rr = resolve(*lin_, f);
    if (rr.p) lin += f.value * rr.p[0];
  }
  const float inst = normalize_ ? InstanceScale(row) : 1.0f;
  const float lin_scale = normalize_ ? std::sqrt(inst) : 1.0f;
  const float lin_out = lin * lin_scale;
  float phi = bias;
  phi += lin_out;
  if (emb_) {
    std::fill(e_.begin(), e_.end(), 0.0f);
    for (const Feature& f : row) {
      const RowRef rr = resolve(*emb_, f);
      if (!rr.p) continue;
      float* e = e_.data() + size_t(f.field) * k;
      if constexpr (K == 8) {
        Axpy8(f.value, rr.p, e);
      } else if (rr.slot_stride == k) {
        Axpy(f.value, rr.p, e, k);
      } else if constexpr (K == 4) {
        AxpySlots4(f.value, rr.p, rr.slot_stride, e, 1);
      } else {
        Axpy(f.value, rr.p, e, k);
      }
    }
    float* sums = scratch_.data() + 2 * size_t(k);
    FmPairSumsK<K>(e_.data(), F, k, scratch_.data(), sums);
    float t = 0;
    for (uint32_t d = 0; d < k; ++d) t += sums[d];
    phi += normalize_ ? t * inst : t;
  }
  *inst_out = inst;
  *lin_scale_out = lin_scale;
  return phi;
}

// Always inline: out of line it was 13% of an lr predict's profile.
[[gnu::always_inline]] inline void LinearFmStep::PrefetchNext(std::span<const Feature> next,
                                                              const std::vector<uint8_t>* known) const {
  for (const Feature& f : next)
    if (f.index < lin_->rows) {
      PrefetchL1(lin_->row(f.index));
      if (emb_) PrefetchL1(emb_->row(f.index));
      if (known) PrefetchL1(known->data() + f.index);
    }
}

bool FoldKnownIntoLinear(ParamStore* store) {
  store->known_linear = KnownLinear{};
  const auto it = store->sparse.find("linear");
  if (it == store->sparse.end()) return false;
  const SparseTable& lin = it->second;
  if (lin.k != 1 || lin.slots != 1 || lin.state != 0 || lin.slot_state != 0) return false;
  if (!store->known.empty() && store->known.size() != lin.rows) return false;
  KnownLinear out;
  out.w.resize(lin.rows);
  const float unknown = std::bit_cast<float>(KnownLinear::kUnknownBits);
  const float* w = lin.base();
  for (uint64_t j = 0; j < lin.rows; ++j) {
    if (std::bit_cast<uint32_t>(w[j]) == KnownLinear::kUnknownBits) return false;
    out.w[j] = store->known.empty() || store->known[j] ? w[j] : unknown;
  }
  store->known_linear = std::move(out);
  return true;
}

template <class Resolve>
[[gnu::always_inline]] inline float LinearFmStep::Score(std::span<const Feature> row, const Resolve& resolve) {
  float inst, lin_scale, phi;
  if (emb_ && emb_->k == 4) {
    phi = ForwardK<4>(row, resolve, bias_->w[0], &inst, &lin_scale);
  } else if (emb_ && emb_->k == 8) {
    phi = ForwardK<8>(row, resolve, bias_->w[0], &inst, &lin_scale);
  } else {
    phi = ForwardK<0>(row, resolve, bias_->w[0], &inst, &lin_scale);
  }
  return LossBlock::RowPredict(loss_, double(phi));
}

bool LinearFmStep::Predict(const ParamStore& store, std::span<const Feature> row, float* pred,
                           std::span<const Feature> next) {
  if (emb_ && mean_) return false;
  if (!store.known_linear.empty()) return PredictKnownLinear(store, row, pred, next);
  // The next row's weights and known flags (one more random byte per
  // feature) load while this row is scored.
  PrefetchNext(next, store.known.empty() ? nullptr : &store.known);
  // Always inline: GCC kept this lambda out of line, a call per feature and
  // table (11% of an fm predict's profile).
  const auto resolve = [&](const SparseTable& t, const Feature& f) __attribute__((always_inline)) {
    return ResolveRow(store, t, f, false);
  };
  *pred = Score(row, resolve);
  return true;
}

bool LinearFmStep::PredictKnownLinear(const ParamStore& store, std::span<const Feature> row, float* pred,
                                      std::span<const Feature> next) {
  const FloatVec& known_w = store.known_linear.w;
  for (const Feature& f : next)
    if (f.index < known_w.size()) {
      PrefetchL1(known_w.data() + f.index);
      if (emb_) PrefetchL1(emb_->row(f.index));
    }
  // ResolveRow's rule, with the known flag read from the linear weight.
  const auto resolve = [&](const SparseTable& t, const Feature& f) __attribute__((always_inline)) -> RowRef {
    if (f.field >= store.num_fields) return {};
    if (f.index < t.rows && f.index < known_w.size() &&
        std::bit_cast<uint32_t>(known_w[f.index]) != KnownLinear::kUnknownBits)
      return &t == lin_ ? RowRef{known_w.data() + f.index, 1} : RowRef{t.row(f.index), t.slot_stride()};
    if (t.unseen.empty()) return {};
    return {t.unseen_row(f.field), t.k};
  };
  *pred = Score(row, resolve);
  return true;
}

// Mirrors bias + linear (+ embedding -> fm) -> sum -> loss, Backward and
// Network::Apply for one row, expression by expression.
template <int K>
bool LinearFmStep::StepK(const BatchView& b, const OptimizerConfig& c, uint64_t step, std::span<const Feature> next,
                         double* loss_sum, double* weight_sum) {
  const std::span<const Feature> row = b.row(0);
  const uint32_t F = F_, k = K > 0 ? K : (emb_ ? emb_->k : 0);
  PrefetchNext(next, nullptr);
  const auto trained = [&](const Feature& f) { return f.field < F && f.index < lin_->rows; };
  // With HotRows (several threads) the bias and the hot rows are this
  // thread's copies; each feature's rows are found once.
  DenseParam* const bias = hot_ ? hot_->bias.local() : bias_;
  if (hot_) {
    // Redirected (model/hot_rows.h): a hot row's linear table row names its
    // copies, found from the row loaded anyway; else a lookup per feature.
    const bool redirected = hot_->linear.redirected();
    hot_lin_.resize(row.size());
    hot_emb_.resize(row.size());
    for (size_t i = 0; i < row.size(); ++i) {
      const Feature& f = row[i];
      if (!trained(f)) continue;
      float* const shared = lin_->row(f.index);
      const int32_t id = redirected ? RedirectId(shared[0]) : hot_->index().Find(f.index);
      hot_lin_[i] = id < 0 ? shared : hot_->linear.local(id);
      if (emb_ && f.index < emb_->rows) hot_emb_[i] = id < 0 ? emb_->row(f.index) : hot_->embedding->local(id);
    }
  }
  // Only for a feature `trained` accepts (and, for the embedding, within it).
  const auto row_of = [&](SparseTable& t, const Feature& f) -> float* {
    if (!hot_) return t.row(f.index);
    const size_t i = size_t(&f - row.data());
    return &t == lin_ ? hot_lin_[i] : hot_emb_[i];
  };
  const auto resolve = [&](const SparseTable& t, const Feature& f) -> RowRef {
    if (!trained(f) || f.index >= t.rows) return {};
    return {row_of(const_cast<SparseTable&>(t), f), t.slot_stride()};
  };
  float inst, lin_scale;
  const float phi = ForwardK<K>(row, resolve, bias->w[0], &inst, &lin_scale);
  const float y = b.labels ? b.labels[0] : 0.0f;
  double row_loss;
  const float pred = LossBlock::RowForward(loss_, double(phi), double(y), &row_loss);
  const double w = use_weights_ ? WeightOf(b, 0) : 1.0;
  *loss_sum = w * row_loss;
  *weight_sum = w;
  // Backward and the optimizer step (bias, then each table's rows in feature order).
  const float g = LossBlock::RowGrad(loss_, pred, y, use_weights_ ? WeightOf(b, 0) : 1.0f);
  UpdateDense(c, bias->l2 ? c.lambda_dense : 0.0f, step, bias, &g);
  const float go_lin = g * lin_scale;
  const bool adagrad = c.type == OptimizerType::kAdaGrad;
  const float lambda = c.lambda_embedding, lr = c.lr;
  for (const Feature& f : row) {
    if (!trained(f)) continue;
    float* wl = row_of(*lin_, f);
    const float gl = f.value * go_lin;
    if (adagrad && lin_->state == 1) {  // UpdateRow's AdaGrad for k = 1, inlined
      const float gd = gl + lambda * wl[0];
      wl[1] += gd * gd;
      wl[0] -= lr * gd / std::sqrt(wl[1]);
    } else {
      UpdateRow(c, lambda, step, wl, &gl, 1, 1, lin_->slot_stride(), lin_->slot_states(wl));
    }
  }
  if (!emb_) return true;
  const float go = (normalize_ ? inst : 1.0f) * g;
  std::fill(de_.begin(), de_.end(), 0.0f);
  FmPairSumsBackwardK<K>(e_.data(), F, k, &go, false, scratch_.data(), de_.data());
  float grad[K > 0 ? K : 1];
  std::vector<float>& dyn = grad_scratch_;
  float* gk = K > 0 ? grad : (dyn.resize(k), dyn.data());
  for (const Feature& f : row) {
    if (!trained(f) || f.index >= emb_->rows) continue;
    const float* src = de_.data() + size_t(f.field) * k;
    float* w = row_of(*emb_, f);
#ifdef __AVX__
    if constexpr (K == 8) {
      if (adagrad) {  // the loop below, 8 lanes at once: same IEEE ops, same bytes
        // The gradient stays in a register: written to gk and read back as
        // one vector it waited on store forwarding (a profile's top stall).
        const __m256 g8 = _mm256_mul_ps(_mm256_set1_ps(f.value), _mm256_loadu_ps(src));
        const __m256 wv = _mm256_loadu_ps(w), acc = _mm256_loadu_ps(w + 8);
        const __m256 gd = _mm256_add_ps(g8, _mm256_mul_ps(_mm256_set1_ps(lambda), wv));
        const __m256 acc2 = _mm256_add_ps(acc, _mm256_mul_ps(gd, gd));
        _mm256_storeu_ps(w + 8, acc2);
        _mm256_storeu_ps(w, _mm256_sub_ps(wv, _mm256_div_ps(_mm256_mul_ps(_mm256_set1_ps(lr), gd),
                                                             _mm256_sqrt_ps(acc2))));
        continue;
      }
    }
#endif
    for (uint32_t d = 0; d < k; ++d) gk[d] = f.value * src[d];
    if (adagrad && k != 4) {  // UpdateRow's generic AdaGrad, inlined (k = 4 has its own kernel there)
      float* __restrict wv = w;
      float* __restrict acc = w + k;
      for (uint32_t d = 0; d < k; ++d) {
        const float gd = gk[d] + lambda * wv[d];
        acc[d] += gd * gd;
        wv[d] -= lr * gd / std::sqrt(acc[d]);
      }
    } else {
      UpdateRow(c, lambda, step, w, gk, 1, k, emb_->slot_stride(), emb_->slot_states(w));
    }
  }
  return true;
}

// ---- factories ---------------------------------------------------------------

std::unique_ptr<Block> MakeLinear(ParamStore* store, SparseTable* table, bool normalize) {
  return std::make_unique<LinearBlock>(store, table, normalize);
}
std::unique_ptr<Block> MakeEmbeddingPool(ParamStore* store, SparseTable* table, bool mean) {
  return std::make_unique<EmbeddingBlock>(store, table, mean, "embedding");
}
std::unique_ptr<Block> MakeFieldAwareEmbedding(ParamStore* store, SparseTable* table, bool mean) {
  return std::make_unique<EmbeddingBlock>(store, table, mean, "field_aware_embedding");
}
std::unique_ptr<Block> MakeFmSecondOrder(uint32_t fields, uint32_t k, bool normalize) {
  return std::make_unique<FmBlock>(fields, k, false, normalize);
}
std::unique_ptr<Block> MakeFfmSecondOrder(uint32_t fields, uint32_t k, bool normalize) {
  return std::make_unique<FfmBlock>(fields, k, normalize);
}
std::unique_ptr<Block> MakeBiInteraction(uint32_t fields, uint32_t k, bool normalize) {
  return std::make_unique<FmBlock>(fields, k, true, normalize);
}
std::unique_ptr<Block> MakeEmbeddingBiInteraction(ParamStore* store, SparseTable* table, bool mean, bool normalize) {
  return std::make_unique<EmbeddingBiInteractionBlock>(store, table, mean, normalize);
}
std::unique_ptr<Block> MakeFieldPairProducts(uint32_t fields, uint32_t k, bool sum) {
  return std::make_unique<FieldPairBlock>(fields, k, sum);
}
std::unique_ptr<Block> MakeFieldPairEmbedding(ParamStore* store, SparseTable* table, bool mean, bool sum) {
  return std::make_unique<FieldPairEmbeddingBlock>(store, table, mean, sum);
}
std::unique_ptr<Block> MakeBias(DenseParam* b) { return std::make_unique<BiasBlock>(b); }
std::unique_ptr<Block> MakeDense(DenseParam* w, DenseParam* b, int in, int out, std::string name) {
  return std::make_unique<DenseBlock>(w, b, in, out, std::move(name));
}
std::unique_ptr<Block> MakeActivation(Activation a, int dim) { return std::make_unique<ActivationBlock>(a, dim); }
std::unique_ptr<Block> MakeDropout(float p, int dim, uint64_t salt) {
  return std::make_unique<DropoutBlock>(p, dim, salt);
}
std::unique_ptr<Block> MakeBatchNorm(DenseParam* gamma, DenseParam* beta, DenseParam* running_mean,
                                     DenseParam* running_var, int dim, std::string name) {
  return std::make_unique<BatchNormBlock>(gamma, beta, running_mean, running_var, dim, std::move(name));
}
std::unique_ptr<Block> MakeConcat(std::vector<int> dims) { return std::make_unique<ConcatBlock>(std::move(dims)); }
std::unique_ptr<Block> MakeSum(int dim) { return std::make_unique<SumBlock>(dim); }

}  // namespace fieldfm
