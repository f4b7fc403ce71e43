// Per-thread copies of the table rows nearly every example touches.
//
// Hogwild threads write each row their example has. A row most examples
// have (a numeric field's few values, a categorical field's most frequent
// ones) is then written by both cores on nearly every row, and its cache lines
// move between the cores each time: on the synthetic FFM set two threads ran
// no faster than one, and slower on a cache-resident one (bench/RESULTS.md,
// session 13). With HotRows each training thread updates its own copy of those
// rows and adds what it changed to the shared table once per chunk of rows
// (Merge). Everything a thread did reaches the table (deltas are added, not
// copied), only later, as hogwild's staleness already allows; merges take one
// lock, so two threads' deltas never race.
//
// Only for optimizers whose state is a sum over steps (SGD, AdaGrad): then
// adding each thread's change of weight and state is the same kind of update
// the shared table sees without copies.
#pragma once

#include <bit>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "model/params.h"

namespace fieldfm {

// Which indices are hot: index -> position in [0, size()), read-only and
// shared by all threads. An open-addressing table at most a quarter full, so
// a lookup is one or two probes of a small, cache-resident array.
class HotIndex {
 public:
  // The indices counted at least min_count times, most frequent first, at
  // most max_rows of them (ties: the lower index): the frequent ones. Then,
  // given, at most max_warm more counted at least warm_min_count times: warm
  // rows, merged less often (HotRows::Merge).
  static std::shared_ptr<const HotIndex> Build(std::span<const uint32_t> counts, uint64_t min_count,
                                               size_t max_rows, uint64_t warm_min_count = 0, size_t max_warm = 0);
  // Ids [0, frequent()) are the frequent rows, [frequent(), size()) the warm.
  size_t frequent() const { return frequent_; }

  int32_t Find(uint64_t index) const {
    if (slots_.empty()) return -1;
    for (uint64_t s = (index * 0x9E3779B97F4A7C15ull) >> shift_;; s = (s + 1) & mask_) {
      const Slot& e = slots_[s];
      if (e.key == index) return e.id;
      if (e.id < 0) return -1;
    }
  }
  size_t size() const { return indices_.size(); }
  // indices()[id] is the index with position id.
  const std::vector<uint32_t>& indices() const { return indices_; }

 private:
  struct Slot {
    uint32_t key = 0;
    int32_t id = -1;  // -1: empty
  };
  std::vector<Slot> slots_;
  uint64_t mask_ = 0;
  int shift_ = 63;  // the hash: the top log2(slots) bits of a Fibonacci product
  std::vector<uint32_t> indices_;
  size_t frequent_ = 0;
};

// Redirects: while an epoch trains, each hot row's first float in the shared
// table can hold a signalling NaN whose payload is the row's id (arithmetic
// never yields a signalling NaN: x86 quiets every NaN it computes). A kernel
// then finds a feature's copy from the table row it loads anyway, where a
// HotIndex::Find per feature cost as much as lr's whole update: two lr
// threads that only read ran 0.39-0.52 s per epoch with Find against 0.22 s
// without copies (bench/RESULTS.md, session 16).
inline constexpr uint32_t kRedirectTag = 0x7FA00000u;  // sign 0, exponent all ones, quiet bit 0, bit 21 set
inline constexpr uint32_t kRedirectIdBits = 21;
inline float RedirectTo(int32_t id) { return std::bit_cast<float>(kRedirectTag | uint32_t(id)); }
// The id of the copy `first` redirects to, or -1 for a row trained in place.
inline int32_t RedirectId(float first) {
  const uint32_t b = std::bit_cast<uint32_t>(first);
  return (b & ~((1u << kRedirectIdBits) - 1)) == kRedirectTag ? int32_t(b & ((1u << kRedirectIdBits) - 1)) : -1;
}

// The shared values of a table's hot rows while their table rows hold
// redirects: Install moves them here and writes the redirects, Restore puts
// them back. Between the two, nothing but the kernels and TableReplica may
// read the table (the trainer restores before validating or saving).
class RedirectedRows {
 public:
  RedirectedRows(SparseTable* table, std::shared_ptr<const HotIndex> hot);
  // False, doing nothing: more hot rows than a redirect can name.
  bool Install();
  void Restore();
  bool installed() const { return installed_; }
  float* row(int32_t id) { return shared_.data() + uint64_t(id) * stride_; }

 private:
  SparseTable* table_;
  std::shared_ptr<const HotIndex> hot_;
  uint64_t stride_;
  std::vector<uint32_t> rows_;  // the hot ids this table has a row for
  FloatVec shared_;
  bool installed_ = false;
};

// One thread's copy of a sparse table's hot rows (weights and state).
class TableReplica {
 public:
  TableReplica(SparseTable* table, std::shared_ptr<const HotIndex> hot);
  SparseTable* table() const { return table_; }
  float* local(int32_t id) { return local_.data() + uint64_t(id) * stride_; }
  // The row training reads and writes for `index` (< table()->rows).
  float* Row(uint64_t index) {
    const int32_t id = hot_->Find(index);
    return id < 0 ? table_->row(index) : local(id);
  }
  // While `r` is installed, the hot rows' shared values are r's, not the
  // table's (Pull and Merge use them). Null: the table's.
  void set_redirect(RedirectedRows* r) { redirect_ = r; }
  bool redirected() const { return redirect_ && redirect_->installed(); }
  // local = the table's rows.
  void Pull();
  // table += local - (the rows at the last Pull or Merge), then Pull; the
  // frequent rows only unless `warm`.
  void Merge(bool warm = true);

 private:
  float* shared_row(uint32_t id);

  SparseTable* table_;
  std::shared_ptr<const HotIndex> hot_;
  uint64_t stride_;
  RedirectedRows* redirect_ = nullptr;
  std::vector<uint32_t> rows_;  // the hot ids this table has a row for, ascending
  size_t frequent_rows_ = 0;     // how many of rows_ are frequent ids
  FloatVec local_, base_;
};

// The same for a dense parameter (the bias every row updates).
class DenseReplica {
 public:
  explicit DenseReplica(DenseParam* param);
  DenseParam* local() { return &local_; }
  void Pull();
  void Merge();

 private:
  DenseParam* param_;
  DenseParam local_, base_;
};

// What one fused one-row kernel (LR/FM, FFM) trains on in place of the
// shared bias, linear table and embedding table (null for LR).
struct HotRows {
  HotRows(std::shared_ptr<const HotIndex> hot, DenseParam* bias, SparseTable* linear, SparseTable* embedding);
  const HotIndex& index() const { return *hot; }
  void Pull(std::mutex& mu);
  // The bias and the frequent rows (every chunk), and with `warm` the warm
  // rows too (at the end of a thread's share of a block).
  void Merge(std::mutex& mu, bool warm);

  std::shared_ptr<const HotIndex> hot;
  DenseReplica bias;
  TableReplica linear;
  std::unique_ptr<TableReplica> embedding;
};

}  // namespace fieldfm
