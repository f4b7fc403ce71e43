// Fused training step for FFM with k = 4 and AdaGrad on a one-row batch (the
// default FFM recipe): lookup, pair scores, gradient and AdaGrad update in one
// pass over the row's feature blocks, without the graph's pooled F x F x k
// buffers. It computes exactly the operations of the generic graph (bias,
// linear, field-aware embedding -> ffm -> sum -> loss, then Apply), so it
// writes the same bytes; tests/model/ffm_fused_test.cpp checks that.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "fieldfm/example.h"
#include "fieldfm/model.h"
#include "model/blocks.h"
#include "model/hot_rows.h"
#include "model/params.h"

namespace fieldfm {

// Cache-line aligned, scratch included: each training thread owns one and
// writes its scratch every row, so no line is shared between threads.
class alignas(64) FusedFfm {
 public:
  FusedFfm(DenseParam* bias, SparseTable* linear, SparseTable* embedding, uint32_t fields, bool normalize,
           LossType loss, bool use_weights);

  // Trains on row 0 of `b` (b.rows == 1). Returns false, touching nothing,
  // when the row is not one feature per field with distinct indices (the
  // generic graph handles it). `next` (may be empty) is prefetched.
  bool Step(const BatchView& b, const OptimizerConfig& c, uint64_t step, std::span<const Feature> next,
            double* loss_sum, double* weight_sum);

  // Inference (unseen rule applied as in blocks.h ResolveRow): the prediction
  // of one row, or false when a field has several features.
  // `next` (may be empty) is prefetched.
  bool Predict(const ParamStore& store, std::span<const Feature> row, float* pred,
               std::span<const Feature> next = {});

  // Starts loading the table rows of `row`'s features (and, given, their
  // known flags).
  void Prefetch(std::span<const Feature> row, const std::vector<uint8_t>* known = nullptr) const;

  // Training with several threads: Step trains on these copies of the bias
  // and the hot rows (model/hot_rows.h); null: the shared tables.
  void set_hot_rows(HotRows* hot) { hot_ = hot; }

  // How Predict reads the rows of a model mapped from its file: copied into
  // local rows first, or in place. Which is faster depends on the host (how
  // the file's pages are mapped, what a TLB miss costs): in place was 1.3-1.5x
  // faster on one kind (bench/RESULTS.md, session 27), the copy faster on
  // another (session 6). Predictions are the same bytes either way, so the
  // first rows time both (kProbe) and the faster one is kept.
  enum class MappedRead : uint8_t { kProbe, kCopy, kInPlace };
  MappedRead mapped_read() const { return mapped_read_; }
  void set_mapped_read(MappedRead r) { mapped_read_ = r; }
  // The probe: blocks of kProbeBlockRows rows alternate between the two ways;
  // the first kProbeWarmBlocks are not timed (cold caches), then the sums
  // over kProbeBlocks blocks decide.
  static constexpr uint32_t kProbeBlockRows = 256, kProbeWarmBlocks = 2, kProbeBlocks = 18;

 private:
  DenseParam* bias_;
  SparseTable* linear_;
  SparseTable* emb_;
  uint32_t F_;
  bool normalize_;
  LossType loss_;
  bool use_weights_;
  HotRows* hot_ = nullptr;
  MappedRead mapped_read_ = MappedRead::kProbe;
  uint32_t probe_rows_ = 0;
  int64_t probe_ns_[2] = {0, 0};  // timed rows' pair sums: [0] copied, [1] in place
  // Per-row scratch: each field's position in the row (-1: absent).
  template <typename T>
  using Scratch = std::vector<T, AlignedAllocator<T>>;
  Scratch<int32_t> pos_;
  Scratch<uint32_t> sorted_index_;
  Scratch<RowRef> vec_;  // inference: each present field's resolved row
  // Each present position's field and value, in field order; training also
  // keeps its table row and the fields with no feature.
  Scratch<float*> rows_;
  Scratch<uint32_t> fields_;
  Scratch<float> xs_;
  Scratch<uint32_t> absent_;
  Scratch<float> local_;  // inference: the present features' rows, F slots of 4 each
  Scratch<const float*> read_rows_;  // inference: each present position's row (in place or in local_)
};

}  // namespace fieldfm
