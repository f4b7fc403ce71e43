// Per-instance prediction cache: sharded LRU, bounded by entries, with a TTL
// counted from insertion. Keys mix the canonical instance hash with the model
// version; the stored model tag is compared again on lookup, so a reload can
// never serve a prediction of another model even on a key collision.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "fieldfm/serve.h"

namespace fieldfm::serve {

struct CacheStats {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t evictions = 0;  // LRU victims (capacity), not expirations
  uint64_t expirations = 0;
  uint64_t entries = 0;
};

class PredictionCache {
 public:
  // capacity 0 makes every Lookup a miss and every Insert a no-op.
  PredictionCache(size_t capacity, std::chrono::milliseconds ttl, SteadyClock clock, size_t shards = 16);
  ~PredictionCache();

  bool enabled() const { return capacity_ > 0; }
  bool Lookup(uint64_t key, uint64_t model_tag, float* value);
  void Insert(uint64_t key, uint64_t model_tag, float value);
  void Clear();
  CacheStats stats() const;

 private:
  struct Shard;
  Shard& ShardFor(uint64_t key) const;

  size_t capacity_;
  std::chrono::steady_clock::duration ttl_;
  SteadyClock clock_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::atomic<uint64_t> hits_{0}, misses_{0}, evictions_{0}, expirations_{0};
};

}  // namespace fieldfm::serve
