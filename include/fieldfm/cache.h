// Binary example cache: text is parsed once, then every epoch reads a
// file of raw ExampleBlocks (no parsing; block() maps them, Next and NextViews
// read them into reused buffers).
// The header records what the cache was built from (source size, mtime and
// the pipeline fingerprint) so a stale cache is rebuilt, never silently used.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fieldfm/example.h"
#include "fieldfm/source.h"
#include "fieldfm/status.h"

namespace fieldfm {

// What a cache must match to be fresh.
struct CacheKey {
  uint64_t source_size = 0;
  int64_t source_mtime_ns = 0;
  uint64_t fingerprint = 0;  // e.g. FeaturePipeline::Fingerprint()
  friend bool operator==(const CacheKey&, const CacheKey&) = default;
};

// Size and mtime of `source_path` plus the caller's fingerprint.
Result<CacheKey> CacheKeyForFile(const std::string& source_path, uint64_t fingerprint);

// Everything the header says about a cache file.
struct CacheInfo {
  uint32_t version = 0;
  CacheKey key;
  uint64_t rows = 0;
  uint64_t features = 0;   // total (field, index, value) triples
  uint64_t num_blocks = 0;
  uint32_t max_field = 0;  // largest field id + 1 (0 when no features)
  uint64_t max_index = 0;  // largest feature index + 1
  double label_min = 0, label_max = 0, label_sum = 0;
  double weight_sum = 0;
  double weighted_label_sum = 0;
  uint64_t file_size = 0;
};

inline constexpr size_t kDefaultCacheBlockRows = 16384;

// Reads `src` to its end and writes the cache to `out_path` atomically.
Status BuildCache(ExampleSource& src, const CacheKey& key, const std::string& out_path,
                  size_t block_rows = kDefaultCacheBlockRows);

// True when `path` starts with the cache magic (a `fieldfm cache` output):
// FeaturePipeline::Open then reads it as a cache, not as text.
bool IsCacheFile(const std::string& path);
// Header + block index of a cache (checksum verified); Corruption on a bad file.
Result<CacheInfo> ReadCacheInfo(const std::string& cache_path);

// True when the cache exists, is intact and was built for `key`. A missing,
// corrupt, truncated or old-version file is simply not fresh.
Result<bool> CacheIsFresh(const std::string& cache_path, const CacheKey& key);

// A read-only mapping of a cache file. Sequential by default; SetShuffle gives
// an out-of-core epoch order: blocks permuted, then rows within each block.
class CacheSource : public ExampleSource {
 public:
  ~CacheSource() override;
  CacheSource(const CacheSource&) = delete;
  CacheSource& operator=(const CacheSource&) = delete;

  static Result<std::unique_ptr<CacheSource>> Open(const std::string& path);

  // ExampleSource: copies rows (in epoch order) into *out.
  Result<size_t> Next(ExampleBlock* out, size_t max_rows) override;
  // The rows Next would copy, as views of the blocks (unshuffled order only;
  // InvalidArgument after SetShuffle): *segments gets one view per stored
  // block touched. Next and NextViews read each block into a buffer (pread,
  // not the mapping: see Mapping in cache.cpp). Views stay valid until the
  // next call (or longer: set_views_kept), which frees the buffers of blocks
  // it has finished (so training on views keeps resident memory flat too).
  // Returns the number of rows, 0 at the end.
  Result<size_t> NextViews(std::vector<BatchView>* segments, size_t max_rows);
  // Views stay valid for `calls` further calls of NextViews instead of one
  // (at least 1): a reader can then fetch the next rows while the previous
  // call's views are still in use (the trainer, which reads and shuffles its
  // next block while it trains on this one).
  void set_views_kept(int calls) { views_kept_ = calls < 1 ? 1 : calls; }
  // With threads > 1, NextViews first reads (and, the first time, verifies)
  // the blocks it is about to view (at least `threads` of them) on that many
  // threads: the checksum and the first touch of a block's pages were a
  // serial sixth of a 2-thread lr predict. Errors are still reported by the
  // view that reaches the block.
  void set_verify_threads(int threads) { verify_threads_ = threads; }
  Status Rewind() override;  // same order again; call SetShuffle for a new epoch
  const ReadStats& stats() const override { return stats_; }

  const CacheInfo& info() const { return info_; }
  size_t num_blocks() const;
  // Zero-copy view of stored block i (storage order). The first access of a
  // block verifies its checksum; Corruption if it does not match. Thread-safe.
  Result<BatchView> block(size_t i) const;

  // For readers that walk stored blocks on several threads themselves: block
  // i read into a buffer (pread) and verified the first time, as NextViews
  // reads it; the view stays valid until ReleaseBlock(i). Thread-safe for
  // distinct blocks.
  Result<BatchView> ReadBlock(size_t i) const { return LoadedBlock(i); }
  void ReleaseBlock(size_t i) const { ReleaseBlockPages(i); }

  // Deterministic in (seed, epoch); also rewinds.
  void SetShuffle(uint64_t seed, uint32_t epoch);
  void ClearShuffle();  // back to storage order; also rewinds
  bool shuffled() const { return shuffled_; }
  // The epoch order, for trainers that walk block() views themselves.
  const std::vector<uint32_t>& block_order() const { return block_order_; }
  void RowOrder(size_t block_index, std::vector<uint32_t>* order) const;

 private:
  struct Mapping;
  CacheSource(std::unique_ptr<Mapping> mapping, CacheInfo info);
  // Unmaps block i's pages from this process once Next has copied it out, so
  // a pass over the cache does not grow resident memory with the rows read.
  void ReleaseBlockPages(size_t i) const;
  // The pages of views_done_'s blocks finished views_kept_ or more calls ago
  // (all of them: Rewind).
  void ReleaseFinishedViews(bool all = false);
  // Block i read into a buffer (kept until ReleaseBlockPages(i)), verified
  // the first time the block is seen. Thread-safe.
  Result<BatchView> LoadedBlock(size_t i) const;
  // Verifies block i at `base` the first time; its verdict after.
  Status CheckedState(size_t i, const uint8_t* base) const;
  void VerifyAhead(size_t max_rows) const;  // see set_verify_threads

  std::unique_ptr<Mapping> map_;
  CacheInfo info_;
  ReadStats stats_;
  bool shuffled_ = false;
  uint64_t shuffle_seed_ = 0;
  uint32_t epoch_ = 0;
  std::vector<uint32_t> block_order_;
  // Cursor: position in block_order_, row within that block.
  size_t cursor_block_ = 0;
  size_t cursor_row_ = 0;
  std::vector<uint32_t> row_order_;  // of the current block when shuffled
  size_t row_order_block_ = SIZE_MAX;
  // Blocks NextViews finished, with the number of the call that finished
  // them; released views_kept_ calls later.
  std::vector<std::pair<uint64_t, size_t>> views_done_;
  uint64_t views_calls_ = 0;
  int views_kept_ = 1;
  int verify_threads_ = 1;
};

inline Result<std::unique_ptr<CacheSource>> OpenCache(const std::string& path) { return CacheSource::Open(path); }

// Opens `cache_path` when it is fresh for `key`, otherwise builds it from
// make_source() first. *rebuilt (optional) tells which happened.
using SourceFactory = std::function<Result<std::unique_ptr<ExampleSource>>()>;
Result<std::unique_ptr<CacheSource>> OpenOrBuildCache(const std::string& cache_path, const CacheKey& key,
                                                      const SourceFactory& make_source,
                                                      size_t block_rows = kDefaultCacheBlockRows,
                                                      bool* rebuilt = nullptr);

}  // namespace fieldfm
