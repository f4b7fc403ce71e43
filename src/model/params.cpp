#include "model/params.h"

#include <algorithm>
#include <cmath>

#ifdef __SSE__
#include <immintrin.h>
#endif

namespace fieldfm {

int StateCount(OptimizerType t) {
  switch (t) {
    case OptimizerType::kSgd: return 0;
    case OptimizerType::kAdaGrad: return 1;
    case OptimizerType::kAdam: return 2;
    case OptimizerType::kFtrl: return 2;
    case OptimizerType::kRowAdaGrad: return 0;
  }
  return 0;
}

int SlotStateCount(OptimizerType t) { return t == OptimizerType::kRowAdaGrad ? 1 : 0; }

std::vector<float> SparseTable::Weights() const {
  std::vector<float> out(rows * slots * k);
  CopyWeights(0, rows * slots, out.data());
  return out;
}

namespace {
// Offset of global slot s (= row * slots + slot) in a table's floats.
inline uint64_t SlotOffset(const SparseTable& t, uint64_t s) {
  if (t.slot_state == 0) return s * t.slot_stride();
  return (s / t.slots) * t.row_stride() + (s % t.slots) * t.slot_stride();
}
}  // namespace

void SparseTable::CopyWeights(uint64_t first, uint64_t n, float* out) const {
  for (uint64_t s = 0; s < n; ++s) std::copy_n(base() + SlotOffset(*this, first + s), k, out + s * k);
}

void SparseTable::SetWeights(uint64_t first, uint64_t n, const float* w) {
  for (uint64_t s = 0; s < n; ++s) std::copy_n(w + s * k, k, base() + SlotOffset(*this, first + s));
}

void SparseTable::DropState() {
  if (state == 0 && slot_state == 0) return;
  // Slot s moves from its offset down to s * k (slot 0 stays): ascending
  // order never overwrites a slot not yet moved, and each copy goes left.
  for (uint64_t s = 1; s < rows * slots; ++s) std::copy_n(data.data() + SlotOffset(*this, s), k, data.data() + s * k);
  data.resize(rows * slots * k);
  state = slot_state = 0;
}

namespace {

// One coordinate; s1/s2 point at its state floats.
inline void UpdateOne(const OptimizerConfig& c, OptimizerType type, float lr, float lambda, float bc1, float bc2,
                      float* w, float* s1, float* s2, float g) {
  switch (type) {
    case OptimizerType::kSgd:
      *w -= lr * (g + lambda * *w);
      break;
    case OptimizerType::kAdaGrad: {
      g += lambda * *w;
      *s1 += g * g;
      *w -= lr * g / std::sqrt(*s1);
      break;
    }
    case OptimizerType::kAdam: {
      g += lambda * *w;
      *s1 = c.beta1 * *s1 + (1 - c.beta1) * g;
      *s2 = c.beta2 * *s2 + (1 - c.beta2) * g * g;
      *w -= lr * (*s1 / bc1) / (std::sqrt(*s2 / bc2) + c.eps);
      break;
    }
    case OptimizerType::kFtrl: {
      // s1 = z, s2 = n. lambda is FTRL's L2 term.
      const float n_new = *s2 + g * g;
      const float sigma = (std::sqrt(n_new) - std::sqrt(*s2)) / lr;
      *s1 += g - sigma * *w;
      *s2 = n_new;
      const float z = *s1;
      *w = std::fabs(z) <= c.ftrl_l1
               ? 0.0f
               : -(z - std::copysign(c.ftrl_l1, z)) / ((c.ftrl_beta + std::sqrt(n_new)) / lr + lambda);
      break;
    }
  }
}

void BiasCorrections(const OptimizerConfig& c, OptimizerType type, uint64_t step, float* bc1, float* bc2) {
  *bc1 = *bc2 = 1.0f;
  if (type == OptimizerType::kAdam) {
    const double t = double(step == 0 ? 1 : step);
    *bc1 = float(1 - std::pow(double(c.beta1), t));
    *bc2 = float(1 - std::pow(double(c.beta2), t));
  }
}

}  // namespace

namespace {

// AdaGrad on slots of 4 weights followed by 4 accumulators (k = 4, the common
// FFM case): one SSE vector per slot.
void AdaGradRow4(float lr, float lambda, float* row, const float* grad, uint32_t slots, uint32_t slot_stride) {
#ifdef __SSE__
  const __m128 vlr = _mm_set1_ps(lr), vlambda = _mm_set1_ps(lambda);
  for (uint32_t s = 0; s < slots; ++s)
    AdaGradSlot4(vlr, vlambda, row + size_t(s) * slot_stride, _mm_loadu_ps(grad + 4 * s));
#else
  for (uint32_t s = 0; s < slots; ++s) {
    float* w = row + size_t(s) * slot_stride;
    for (int d = 0; d < 4; ++d) {
      const float g = grad[4 * s + d] + lambda * w[d];
      w[4 + d] += g * g;
      w[d] -= lr * g / std::sqrt(w[4 + d]);
    }
  }
#endif
}

}  // namespace

namespace {

// Row-wise AdaGrad: slot s's k weights share the accumulator acc[s], which
// adds the mean of their squared gradients (plus L2 term).
void RowAdaGrad(float lr, float lambda, float* row, const float* grad, uint32_t slots, uint32_t k,
                uint32_t slot_stride, float* acc) {
#ifdef __SSE__
  if (k == 4) {
    const __m128 vlr = _mm_set1_ps(lr), vlambda = _mm_set1_ps(lambda);
    for (uint32_t s = 0; s < slots; ++s)
      RowAdaGradSlot4(vlr, vlambda, row + size_t(s) * slot_stride, acc + s, _mm_loadu_ps(grad + 4 * s));
    return;
  }
#endif
  // Other k: exact sqrt, as per-weight AdaGrad there (k = 1 gives its bytes).
  for (uint32_t s = 0; s < slots; ++s) {
    float* w = row + size_t(s) * slot_stride;
    const float* g = grad + size_t(s) * k;
    float sum = 0;
    for (uint32_t d = 0; d < k; ++d) {
      const float gd = g[d] + lambda * w[d];
      sum += gd * gd;
    }
    const float a = acc[s] + sum / float(k);
    acc[s] = a;
    const float root = std::sqrt(a);
    for (uint32_t d = 0; d < k; ++d) {
      const float gd = g[d] + lambda * w[d];
      w[d] -= lr * gd / root;
    }
  }
}

}  // namespace

void UpdateRow(const OptimizerConfig& c, float lambda, uint64_t step, float* row, const float* grad, uint32_t slots,
               uint32_t k, uint32_t slot_stride, float* slot_acc) {
  if (c.type == OptimizerType::kRowAdaGrad) return RowAdaGrad(c.lr, lambda, row, grad, slots, k, slot_stride, slot_acc);
  if (c.type == OptimizerType::kAdaGrad && k == 4) return AdaGradRow4(c.lr, lambda, row, grad, slots, slot_stride);
  float bc1, bc2;
  BiasCorrections(c, c.type, step, &bc1, &bc2);
  for (uint32_t s = 0; s < slots; ++s) {
    float* slot = row + size_t(s) * slot_stride;
    const float* g = grad + size_t(s) * k;
    if (c.type == OptimizerType::kAdaGrad) {
      for (uint32_t d = 0; d < k; ++d) {
        const float gd = g[d] + lambda * slot[d];
        slot[k + d] += gd * gd;
        slot[d] -= c.lr * gd / std::sqrt(slot[k + d]);
      }
    } else {
      for (uint32_t d = 0; d < k; ++d) UpdateOne(c, c.type, c.lr, lambda, bc1, bc2, slot + d, slot + k + d, slot + 2 * k + d, g[d]);
    }
  }
}

void UpdateDense(const OptimizerConfig& c, float lambda, uint64_t step, DenseParam* p, const float* grad) {
  if (!p->trainable) return;
  float bc1, bc2;
  BiasCorrections(c, c.dense_type, step, &bc1, &bc2);
  float dummy = 0;
  const bool has1 = !p->s1.empty(), has2 = !p->s2.empty();
  for (size_t i = 0; i < p->w.size(); ++i) {
    float* s1 = has1 ? &p->s1[i] : &dummy;
    float* s2 = has2 ? &p->s2[i] : &dummy;
    UpdateOne(c, c.dense_type, c.dense_lr, lambda, bc1, bc2, &p->w[i], s1, s2, grad[i]);
  }
}

void InitState(const OptimizerConfig& c, SparseTable* t) {
  const uint32_t ss = t->slot_stride(), k = t->k;
  if (t->slot_state > 0)
    for (uint64_t r = 0; r < t->rows; ++r) std::fill_n(t->slot_states(t->row(r)), t->slots * t->slot_state, c.adagrad_init);
  if (t->state == 0) return;
  for (uint64_t s = 0; s < t->rows * t->slots; ++s) {
    float* slot = t->data.data() + s * ss;
    for (uint32_t d = 0; d < k; ++d) {
      switch (c.type) {
        case OptimizerType::kAdaGrad: slot[k + d] = c.adagrad_init; break;
        case OptimizerType::kAdam: slot[k + d] = slot[2 * k + d] = 0; break;
        case OptimizerType::kFtrl:  // z chosen so that the initial weight is the current one
          slot[k + d] = -slot[d] * (c.ftrl_beta / c.lr + c.lambda_embedding);
          slot[2 * k + d] = 0;
          break;
        case OptimizerType::kSgd:
        case OptimizerType::kRowAdaGrad: break;
      }
    }
  }
}

void InitState(const OptimizerConfig& c, DenseParam* p) {
  const int n = p->trainable ? StateCount(c.dense_type) : 0;
  p->s1.assign(n >= 1 ? p->w.size() : 0, 0.0f);
  p->s2.assign(n >= 2 ? p->w.size() : 0, 0.0f);
  for (size_t i = 0; i < p->s1.size(); ++i) {
    if (c.dense_type == OptimizerType::kAdaGrad) p->s1[i] = c.adagrad_init;
    if (c.dense_type == OptimizerType::kFtrl) p->s1[i] = -p->w[i] * (c.ftrl_beta / c.dense_lr + c.lambda_dense);
  }
}

}  // namespace fieldfm
