// On-disk layout of the binary example cache (little-endian, host layout).
//
//   [CacheHeader, 192 bytes]
//   block 0 .. block n-1, each 64-byte aligned:
//       float labels[rows], float weights[rows], pad to 8,
//       uint64 offsets[rows + 1] (offsets[0] == 0), Feature features[nnz]
//   [BlockIndexEntry x num_blocks], 64-byte aligned
//
// header.checksum = XXH64(header with checksum = 0, then the index bytes), so
// opening a cache is O(blocks); each block carries its own checksum, checked
// the first time the block is read: XXH3 (64 bits) from version 2 on, XXH64
// in version 1, which is still read. XXH3 through libxxhash's runtime
// dispatch (AVX2 / AVX-512) hashed a 7.5 MB block at 46 GB/s here, XXH64 at
// 10.7 (bench/RESULTS.md, session 29): the check was 15% of an lr predict.
#pragma once

#include <cstddef>
#include <cstdint>

#include "fieldfm/example.h"

namespace fieldfm::cache_format {

inline constexpr char kMagic[8] = {'F', 'F', 'M', 'C', 'A', 'C', 'H', 'E'};
inline constexpr uint32_t kVersion = 2;        // written
inline constexpr uint32_t kOldestVersion = 1;  // still read
inline constexpr size_t kAlign = 64;

struct CacheHeader {
  char magic[8];
  uint32_t version;
  uint32_t header_size;
  uint64_t source_size;
  int64_t source_mtime_ns;
  uint64_t fingerprint;
  uint64_t rows;
  uint64_t features;
  uint64_t num_blocks;
  uint64_t index_offset;
  uint64_t file_size;
  uint32_t max_field;
  uint32_t reserved0;
  uint64_t max_index;
  double label_min, label_max, label_sum, weight_sum, weighted_label_sum;
  uint64_t reserved[6];
  uint64_t checksum;
};
static_assert(sizeof(CacheHeader) == 192);

struct BlockIndexEntry {
  uint64_t offset;
  uint64_t rows;
  uint64_t features;
  uint64_t checksum;  // XXH3 (version 1: XXH64) of the block's bytes
};
static_assert(sizeof(BlockIndexEntry) == 32);

inline constexpr uint64_t AlignUp(uint64_t x, uint64_t a = kAlign) { return (x + a - 1) / a * a; }

// Byte offsets of a block's arrays relative to the block start.
struct BlockLayout {
  uint64_t labels, weights, offsets, features, size;
  static BlockLayout For(uint64_t rows, uint64_t nnz) {
    BlockLayout l{};
    l.labels = 0;
    l.weights = rows * sizeof(float);
    l.offsets = AlignUp(2 * rows * sizeof(float), 8);
    l.features = l.offsets + (rows + 1) * sizeof(uint64_t);
    l.size = l.features + nnz * sizeof(Feature);
    return l;
  }
};

}  // namespace fieldfm::cache_format
