#include "model/hot_rows.h"

#include <algorithm>
#include <bit>
#include <numeric>

namespace fieldfm {

namespace {
// The shared value plus this thread's change. Unchanged by other threads, it
// is this thread's value exactly (base + (mine - base) can round otherwise),
// so one thread with copies writes the bytes of one thread without them.
inline float MergedValue(float shared, float mine, float base) {
  return shared == base ? mine : shared + (mine - base);
}

// shared[j] += mine[j] - base[j], then all three hold the merged value.
void MergeInto(float* __restrict shared, float* __restrict mine, float* __restrict base, size_t n) {
  for (size_t j = 0; j < n; ++j) {
    const float merged = MergedValue(shared[j], mine[j], base[j]);
    shared[j] = mine[j] = base[j] = merged;
  }
}
}  // namespace

std::shared_ptr<const HotIndex> HotIndex::Build(std::span<const uint32_t> counts, uint64_t min_count,
                                                size_t max_rows, uint64_t warm_min_count, size_t max_warm) {
  auto h = std::make_shared<HotIndex>();
  std::vector<uint32_t>& ids = h->indices_;
  const uint64_t least = max_warm > 0 ? std::min(min_count, warm_min_count) : min_count;
  for (size_t i = 0; i < counts.size(); ++i)
    if (counts[i] > 0 && counts[i] >= least) ids.push_back(uint32_t(i));
  std::stable_sort(ids.begin(), ids.end(), [&](uint32_t a, uint32_t b) { return counts[a] > counts[b]; });
  size_t frequent = 0;
  while (frequent < ids.size() && frequent < max_rows && counts[ids[frequent]] >= min_count) ++frequent;
  h->frequent_ = frequent;
  ids.resize(std::min(ids.size(), frequent + max_warm));
  if (ids.empty()) return h;
  const uint64_t slots = std::max<uint64_t>(2, std::bit_ceil(uint64_t(ids.size()) * 4));
  h->slots_.assign(slots, Slot{});
  h->mask_ = slots - 1;
  h->shift_ = 64 - std::countr_zero(slots);
  for (size_t id = 0; id < ids.size(); ++id) {
    uint64_t s = (uint64_t(ids[id]) * 0x9E3779B97F4A7C15ull) >> h->shift_;
    while (h->slots_[s].id >= 0) s = (s + 1) & h->mask_;
    h->slots_[s] = Slot{ids[id], int32_t(id)};
  }
  return h;
}

TableReplica::TableReplica(SparseTable* table, std::shared_ptr<const HotIndex> hot)
    : table_(table), hot_(std::move(hot)), stride_(table->row_stride()) {
  const auto& ids = hot_->indices();
  for (size_t id = 0; id < ids.size(); ++id)
    if (ids[id] < table_->rows) rows_.push_back(uint32_t(id));
  frequent_rows_ = size_t(std::lower_bound(rows_.begin(), rows_.end(), uint32_t(hot_->frequent())) - rows_.begin());
  local_.assign(ids.size() * stride_, 0.0f);
  base_.assign(ids.size() * stride_, 0.0f);
}

RedirectedRows::RedirectedRows(SparseTable* table, std::shared_ptr<const HotIndex> hot)
    : table_(table), hot_(std::move(hot)), stride_(table->row_stride()) {
  const auto& ids = hot_->indices();
  for (size_t id = 0; id < ids.size(); ++id)
    if (ids[id] < table_->rows) rows_.push_back(uint32_t(id));
  shared_.assign(ids.size() * stride_, 0.0f);
}

bool RedirectedRows::Install() {
  if (installed_ || hot_->size() > (size_t(1) << kRedirectIdBits)) return false;
  const auto& ids = hot_->indices();
  for (const uint32_t id : rows_) {
    float* r = table_->row(ids[id]);
    std::copy(r, r + stride_, row(int32_t(id)));
    r[0] = RedirectTo(int32_t(id));
  }
  installed_ = true;
  return true;
}

void RedirectedRows::Restore() {
  if (!installed_) return;
  const auto& ids = hot_->indices();
  for (const uint32_t id : rows_) std::copy(row(int32_t(id)), row(int32_t(id)) + stride_, table_->row(ids[id]));
  installed_ = false;
}

float* TableReplica::shared_row(uint32_t id) {
  return redirected() ? redirect_->row(int32_t(id)) : table_->row(hot_->indices()[id]);
}

void TableReplica::Pull() {
  for (const uint32_t id : rows_) {
    const float* src = shared_row(id);
    std::copy(src, src + stride_, local(id));
    std::copy(src, src + stride_, base_.data() + uint64_t(id) * stride_);
  }
}

void TableReplica::Merge(bool warm) {
  const size_t n = warm ? rows_.size() : frequent_rows_;
  for (size_t i = 0; i < n; ++i) {
    const uint32_t id = rows_[i];
    MergeInto(shared_row(id), local(id), base_.data() + uint64_t(id) * stride_, stride_);
  }
}


DenseReplica::DenseReplica(DenseParam* param) : param_(param), local_(*param), base_(*param) {}

void DenseReplica::Pull() {
  local_.w = base_.w = param_->w;
  local_.s1 = base_.s1 = param_->s1;
  local_.s2 = base_.s2 = param_->s2;
}

void DenseReplica::Merge() {
  MergeInto(param_->w.data(), local_.w.data(), base_.w.data(), param_->w.size());
  MergeInto(param_->s1.data(), local_.s1.data(), base_.s1.data(), param_->s1.size());
  MergeInto(param_->s2.data(), local_.s2.data(), base_.s2.data(), param_->s2.size());
}

HotRows::HotRows(std::shared_ptr<const HotIndex> h, DenseParam* b, SparseTable* lin, SparseTable* emb)
    : hot(std::move(h)), bias(b), linear(lin, hot) {
  if (emb) embedding = std::make_unique<TableReplica>(emb, hot);
}

void HotRows::Pull(std::mutex& mu) {
  std::lock_guard<std::mutex> lock(mu);
  bias.Pull();
  linear.Pull();
  if (embedding) embedding->Pull();
}

void HotRows::Merge(std::mutex& mu, bool warm) {
  std::lock_guard<std::mutex> lock(mu);
  bias.Merge();
  linear.Merge(warm);
  if (embedding) embedding->Merge(warm);
}

}  // namespace fieldfm
