#include "train/best_snapshot.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>

#include <fmt/format.h>

#include "util/mix.h"

namespace fieldfm {

namespace {

constexpr char kMagic[8] = {'F', 'F', 'M', 'B', 'E', 'S', 'T', '1'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderBytes = 32;
// Slots copied per piece: 64 KiB at k = 4, so the pieces cost no memory.
constexpr uint64_t kSlotsPerPiece = 4096;

// Unique enough that no other write (another run, another epoch) repeats it.
uint64_t FreshTag() {
  static std::atomic<uint64_t> counter{0};
  const uint64_t now = uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
  const uint64_t tag = Mix64(now ^ Mix64(uint64_t(::getpid()) << 32 ^ counter++));
  return tag == 0 ? 1 : tag;  // 0 means "no snapshot" to callers
}

}  // namespace

SnapshotWriter::SnapshotWriter() : hash_(XXH64_createState()) {}
SnapshotWriter::~SnapshotWriter() { XXH64_freeState(hash_); }

Status SnapshotWriter::Raw(const void* p, uint64_t n) {
  XXH64_update(hash_, p, n);
  payload_ += n;
  return f_.Write(p, n);
}

Status SnapshotWriter::Open(const std::string& path, int epoch, const std::vector<SnapshotTable>& tables) {
  FIELDFM_RETURN_IF_ERROR(f_.Open(path));
  XXH64_reset(hash_, 0);
  payload_ = data_left_ = 0;
  tag_ = FreshTag();
  char header[kHeaderBytes] = {};
  FIELDFM_RETURN_IF_ERROR(f_.Write(header, sizeof header));  // rewritten by Commit
  const uint32_t e = uint32_t(epoch), count = uint32_t(tables.size());
  FIELDFM_RETURN_IF_ERROR(Raw(&tag_, sizeof tag_));
  FIELDFM_RETURN_IF_ERROR(Raw(&e, sizeof e));
  FIELDFM_RETURN_IF_ERROR(Raw(&count, sizeof count));
  for (const SnapshotTable& t : tables) {
    const uint32_t len = uint32_t(t.name.size());
    FIELDFM_RETURN_IF_ERROR(Raw(&len, sizeof len));
    FIELDFM_RETURN_IF_ERROR(Raw(t.name.data(), len));
    FIELDFM_RETURN_IF_ERROR(Raw(&t.floats, sizeof t.floats));
    data_left_ += t.floats * sizeof(float);
  }
  return Status::Ok();
}

Status SnapshotWriter::Append(const void* data, uint64_t bytes) {
  if (bytes > data_left_) return Status::Internal(f_.path() + ": more snapshot data than announced");
  data_left_ -= bytes;
  return Raw(data, bytes);
}

Result<uint64_t> SnapshotWriter::Commit() {
  if (data_left_ != 0) return Status::Internal(f_.path() + ": less snapshot data than announced");
  char header[kHeaderBytes] = {};
  const uint64_t digest = XXH64_digest(hash_);
  std::memcpy(header, kMagic, 8);
  std::memcpy(header + 8, &kVersion, 4);
  std::memcpy(header + 16, &payload_, 8);
  std::memcpy(header + 24, &digest, 8);
  if (std::fflush(f_.file()) != 0 || std::fseek(f_.file(), 0, SEEK_SET) != 0)
    return Status::IOError(f_.path() + ": cannot rewrite the header");
  FIELDFM_RETURN_IF_ERROR(f_.Write(header, sizeof header));
  FIELDFM_RETURN_IF_ERROR(f_.Commit());
  return tag_;
}

SnapshotReader::SnapshotReader() : hash_(XXH64_createState()) {}
SnapshotReader::~SnapshotReader() {
  if (f_) std::fclose(f_);
  XXH64_freeState(hash_);
}

Status SnapshotReader::Bad(const std::string& what) const {
  return Status::Corruption(fmt::format("{}: best-epoch snapshot {}", path_, what));
}

Status SnapshotReader::Raw(void* p, uint64_t n) {
  if (std::fread(p, 1, n, f_) != n) return std::ferror(f_) ? Status::IOError(path_ + ": read error") : Bad("is truncated");
  XXH64_update(hash_, p, n);
  return Status::Ok();
}

Status SnapshotReader::Open(const std::string& path, uint64_t tag) {
  path_ = path;
  f_ = std::fopen(path.c_str(), "rb");
  if (!f_) return Status::IOError(fmt::format("{}: cannot open the best-epoch snapshot ({})", path, std::strerror(errno)));
  char header[kHeaderBytes];
  struct stat st;
  if (std::fread(header, 1, sizeof header, f_) != sizeof header || std::memcmp(header, kMagic, 8) != 0)
    return Bad("is not a snapshot file (no FFMBEST1 header)");
  uint32_t version;
  uint64_t payload;
  std::memcpy(&version, header + 8, 4);
  std::memcpy(&payload, header + 16, 8);
  std::memcpy(&digest_, header + 24, 8);
  if (version != kVersion) return Bad(fmt::format("has format version {}, expected {}", version, kVersion));
  if (::fstat(fileno(f_), &st) != 0) return Status::IOError(path + ": cannot stat");
  if (uint64_t(st.st_size) != kHeaderBytes + payload)
    return Bad(fmt::format("is truncated or padded ({} bytes, header says {})", st.st_size, kHeaderBytes + payload));
  XXH64_reset(hash_, 0);
  uint64_t file_tag;
  uint32_t epoch, count;
  FIELDFM_RETURN_IF_ERROR(Raw(&file_tag, sizeof file_tag));
  FIELDFM_RETURN_IF_ERROR(Raw(&epoch, sizeof epoch));
  FIELDFM_RETURN_IF_ERROR(Raw(&count, sizeof count));
  epoch_ = int(epoch);
  if (file_tag != tag) return Bad(fmt::format("is stale: written by another run or epoch (its epoch: {})", epoch));
  uint64_t head = 16, data = 0;
  tables_.clear();
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t len;
    FIELDFM_RETURN_IF_ERROR(Raw(&len, sizeof len));
    if (len > 4096) return Bad("has a bad table name");
    SnapshotTable t;
    t.name.resize(len);
    FIELDFM_RETURN_IF_ERROR(Raw(t.name.data(), len));
    FIELDFM_RETURN_IF_ERROR(Raw(&t.floats, sizeof t.floats));
    if (t.floats > payload / sizeof(float)) return Bad("has a bad table size");
    head += 4 + len + 8;
    data += t.floats * sizeof(float);
    if (data > payload) return Bad("has tables that do not add up to its size");
    tables_.push_back(std::move(t));
  }
  if (head + data != payload) return Bad("has tables that do not add up to its size");
  data_left_ = data;
  return Status::Ok();
}

Status SnapshotReader::Read(float* out, uint64_t n) {
  if (n * sizeof(float) > data_left_) return Status::Internal(path_ + ": read past the snapshot's tables");
  data_left_ -= n * sizeof(float);
  return Raw(out, n * sizeof(float));
}

Status SnapshotReader::Finish() {
  if (data_left_ != 0) return Status::Internal(path_ + ": snapshot not read to its end");
  if (XXH64_digest(hash_) != digest_) return Bad("is corrupted (checksum mismatch)");
  return Status::Ok();
}

Result<uint64_t> WriteSparseSnapshot(const std::string& path, int epoch, const ParamStore& store) {
  std::vector<SnapshotTable> tables;
  for (const auto& [name, t] : store.sparse) tables.push_back({name, t.rows * t.slots * t.k});
  SnapshotWriter w;
  FIELDFM_RETURN_IF_ERROR(w.Open(path, epoch, tables));
  std::vector<float> piece;
  for (const auto& [name, t] : store.sparse) {
    const uint64_t slots = t.rows * t.slots;
    for (uint64_t first = 0; first < slots; first += kSlotsPerPiece) {
      const uint64_t n = std::min(kSlotsPerPiece, slots - first);
      piece.resize(n * t.k);
      t.CopyWeights(first, n, piece.data());
      FIELDFM_RETURN_IF_ERROR(w.Append(piece.data(), piece.size() * sizeof(float)));
    }
  }
  return w.Commit();
}

Status RestoreSparseSnapshot(const std::string& path, uint64_t tag, ParamStore* store) {
  SnapshotReader r;
  FIELDFM_RETURN_IF_ERROR(r.Open(path, tag));
  std::map<std::string, int> seen;
  for (const SnapshotTable& st : r.tables()) {
    auto it = store->sparse.find(st.name);
    if (it == store->sparse.end() || seen[st.name]++)
      return Status::Corruption(fmt::format("{}: best-epoch snapshot has table '{}', which the model has not", path, st.name));
    SparseTable& t = it->second;
    if (st.floats != t.rows * t.slots * t.k)
      return Status::Corruption(fmt::format("{}: best-epoch snapshot table '{}' has {} weights, the model {}", path,
                                            st.name, st.floats, t.rows * t.slots * t.k));
  }
  if (seen.size() != store->sparse.size())
    return Status::Corruption(path + ": best-epoch snapshot lacks some of the model's tables");
  std::vector<float> piece;
  for (const SnapshotTable& st : r.tables()) {
    SparseTable& t = store->sparse.at(st.name);
    const uint64_t slots = t.rows * t.slots;
    for (uint64_t first = 0; first < slots; first += kSlotsPerPiece) {
      const uint64_t n = std::min(kSlotsPerPiece, slots - first);
      piece.resize(n * t.k);
      FIELDFM_RETURN_IF_ERROR(r.Read(piece.data(), piece.size()));
      t.SetWeights(first, n, piece.data());
    }
  }
  return r.Finish();
}

}  // namespace fieldfm
