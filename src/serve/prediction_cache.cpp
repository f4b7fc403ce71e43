#include "serve/prediction_cache.h"

#include <algorithm>

namespace fieldfm::serve {

// Entries live in a vector and are chained into an LRU list by index, so an
// insert after warm-up allocates nothing but the hash map node.
struct PredictionCache::Shard {
  static constexpr uint32_t kNil = UINT32_MAX;
  struct Node {
    uint64_t key = 0;
    uint64_t model_tag = 0;
    std::chrono::steady_clock::time_point expires;
    float value = 0;
    uint32_t prev = kNil, next = kNil;
  };

  std::mutex mu;
  size_t capacity = 0;
  std::vector<Node> nodes;
  std::vector<uint32_t> free_slots;
  std::unordered_map<uint64_t, uint32_t> index;
  uint32_t head = kNil, tail = kNil;  // head = most recently used

  void Unlink(uint32_t i) {
    Node& n = nodes[i];
    if (n.prev != kNil) nodes[n.prev].next = n.next; else head = n.next;
    if (n.next != kNil) nodes[n.next].prev = n.prev; else tail = n.prev;
    n.prev = n.next = kNil;
  }
  void PushFront(uint32_t i) {
    Node& n = nodes[i];
    n.prev = kNil;
    n.next = head;
    if (head != kNil) nodes[head].prev = i;
    head = i;
    if (tail == kNil) tail = i;
  }
  void Erase(uint32_t i) {
    Unlink(i);
    index.erase(nodes[i].key);
    free_slots.push_back(i);
  }
};

PredictionCache::PredictionCache(size_t capacity, std::chrono::milliseconds ttl, SteadyClock clock, size_t shards)
    : capacity_(capacity), ttl_(ttl), clock_(clock ? std::move(clock) : SteadyClock(std::chrono::steady_clock::now)) {
  if (capacity_ == 0) return;
  // Never more shards than entries, so the bound is exact for tiny caches.
  shards = std::max<size_t>(1, std::min(shards, capacity_));
  for (size_t s = 0; s < shards; ++s) {
    auto shard = std::make_unique<Shard>();
    shard->capacity = capacity_ / shards + (s < capacity_ % shards ? 1 : 0);
    shards_.push_back(std::move(shard));
  }
}

PredictionCache::~PredictionCache() = default;

PredictionCache::Shard& PredictionCache::ShardFor(uint64_t key) const {
  // The high bits pick the shard; the map uses the (well mixed) whole key.
  return *shards_[(key >> 40) % shards_.size()];
}

bool PredictionCache::Lookup(uint64_t key, uint64_t model_tag, float* value) {
  if (capacity_ == 0) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  Shard& shard = ShardFor(key);
  const auto now = clock_();
  std::lock_guard lock(shard.mu);
  auto it = shard.index.find(key);
  if (it == shard.index.end()) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  const uint32_t i = it->second;
  Shard::Node& n = shard.nodes[i];
  if (n.model_tag != model_tag || (ttl_.count() > 0 && now >= n.expires)) {
    if (n.model_tag == model_tag) expirations_.fetch_add(1, std::memory_order_relaxed);
    shard.Erase(i);
    misses_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  *value = n.value;
  shard.Unlink(i);
  shard.PushFront(i);
  hits_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void PredictionCache::Insert(uint64_t key, uint64_t model_tag, float value) {
  if (capacity_ == 0) return;
  Shard& shard = ShardFor(key);
  const auto expires = clock_() + ttl_;
  std::lock_guard lock(shard.mu);
  auto it = shard.index.find(key);
  uint32_t i;
  if (it != shard.index.end()) {
    i = it->second;
    shard.Unlink(i);
  } else {
    if (shard.index.size() >= shard.capacity) {
      shard.Erase(shard.tail);
      evictions_.fetch_add(1, std::memory_order_relaxed);
    }
    if (!shard.free_slots.empty()) {
      i = shard.free_slots.back();
      shard.free_slots.pop_back();
    } else {
      i = static_cast<uint32_t>(shard.nodes.size());
      shard.nodes.emplace_back();
    }
    shard.index.emplace(key, i);
  }
  Shard::Node& n = shard.nodes[i];
  n.key = key;
  n.model_tag = model_tag;
  n.value = value;
  n.expires = expires;
  shard.PushFront(i);
}

void PredictionCache::Clear() {
  for (auto& shard : shards_) {
    std::lock_guard lock(shard->mu);
    shard->nodes.clear();
    shard->free_slots.clear();
    shard->index.clear();
    shard->head = shard->tail = Shard::kNil;
  }
}

CacheStats PredictionCache::stats() const {
  CacheStats s;
  s.hits = hits_.load(std::memory_order_relaxed);
  s.misses = misses_.load(std::memory_order_relaxed);
  s.evictions = evictions_.load(std::memory_order_relaxed);
  s.expirations = expirations_.load(std::memory_order_relaxed);
  for (auto& shard : shards_) {
    std::lock_guard lock(shard->mu);
    s.entries += shard->index.size();
  }
  return s;
}

}  // namespace fieldfm::serve
