// The best epoch's sparse weights, kept in a file while training goes on.
//
// --auto-stop must be able to return the best epoch's weights after later
// epochs have changed them. A copy in memory would raise peak memory by the
// size of the model (FFM on 2M rows: 1.74 GiB on 3.48 GiB of parameters +
// optimizer state), so the sparse tables' weights (no optimizer state) go to
// a file, written and read back a piece at a time.
//
// Layout (little-endian):
//   header, 32 bytes: magic "FFMBEST1", u32 format version, u32 0,
//                     u64 payload bytes, u64 XXH64(payload)
//   payload: u64 tag, u32 epoch, u32 table count,
//            per table: u32 name length, name, u64 float count,
//            then the tables' floats in that order.
// The tag is drawn afresh for every file written; a reader names the tag it
// expects, so a stale file (another run or another epoch), a truncated or a
// corrupted one is an error naming the file, never silently wrong weights.
#pragma once

#include <xxhash.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "fieldfm/status.h"
#include "model/params.h"
#include "util/atomic_file.h"

namespace fieldfm {

struct SnapshotTable {
  std::string name;
  uint64_t floats = 0;
};

// Writes a snapshot atomically: Open, the tables' floats in order through
// Append (any piece sizes), Commit.
class SnapshotWriter {
 public:
  SnapshotWriter();
  ~SnapshotWriter();
  SnapshotWriter(const SnapshotWriter&) = delete;
  SnapshotWriter& operator=(const SnapshotWriter&) = delete;

  Status Open(const std::string& path, int epoch, const std::vector<SnapshotTable>& tables);
  Status Append(const void* data, uint64_t bytes);
  // The tag a reader must name.
  Result<uint64_t> Commit();

 private:
  Status Raw(const void* p, uint64_t n);
  AtomicFile f_;
  XXH64_state_t* hash_;
  uint64_t payload_ = 0, data_left_ = 0, tag_ = 0;
};

// Reads a snapshot front to back: Open checks the header, the file size and
// the tag; Read hands out the floats in order; Finish checks that all were
// read and that the checksum matches (only then is what was read trusted).
class SnapshotReader {
 public:
  SnapshotReader();
  ~SnapshotReader();
  SnapshotReader(const SnapshotReader&) = delete;
  SnapshotReader& operator=(const SnapshotReader&) = delete;

  Status Open(const std::string& path, uint64_t tag);
  const std::vector<SnapshotTable>& tables() const { return tables_; }
  int epoch() const { return epoch_; }
  Status Read(float* out, uint64_t n);
  Status Finish();

 private:
  Status Raw(void* p, uint64_t n);
  Status Bad(const std::string& what) const;
  std::string path_;
  std::FILE* f_ = nullptr;
  XXH64_state_t* hash_;
  std::vector<SnapshotTable> tables_;
  int epoch_ = 0;
  uint64_t digest_ = 0, data_left_ = 0;
};

// The weights of every sparse table of `store`; returns the file's tag.
Result<uint64_t> WriteSparseSnapshot(const std::string& path, int epoch, const ParamStore& store);
// Streams the weights back into the tables (their optimizer state is kept).
// The snapshot must hold exactly the store's tables, at their sizes.
Status RestoreSparseSnapshot(const std::string& path, uint64_t tag, ParamStore* store);

}  // namespace fieldfm
