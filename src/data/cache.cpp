#include "fieldfm/cache.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <xxh_x86dispatch.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "data/cache_format.h"
#include "data/shuffle.h"
#include "util/atomic_file.h"
#include "util/parallel.h"

namespace fieldfm {

using cache_format::AlignUp;
using cache_format::BlockIndexEntry;
using cache_format::BlockLayout;
using cache_format::CacheHeader;

namespace {

std::string ErrnoText() { return std::strerror(errno); }

// Writes through an AtomicFile while hashing the current block's bytes.
class BlockWriter {
 public:
  explicit BlockWriter(AtomicFile* f) : f_(f) {}
  Status Write(const void* p, size_t n, XXH3_state_t* hash) {
    if (hash) XXH3_64bits_update_dispatch(hash, p, n);
    pos_ += n;
    return f_->Write(p, n);
  }
  Status PadTo(uint64_t target, XXH3_state_t* hash) {
    static const char kZeros[cache_format::kAlign] = {};
    while (pos_ < target) {
      size_t n = std::min<uint64_t>(target - pos_, sizeof(kZeros));
      FIELDFM_RETURN_IF_ERROR(Write(kZeros, n, hash));
    }
    return Status::Ok();
  }
  uint64_t pos() const { return pos_; }

 private:
  AtomicFile* f_;
  uint64_t pos_ = 0;
};

// Appends src's rows to *dst (offsets rebased).
void AppendBlock(const ExampleBlock& src, ExampleBlock* dst) {
  dst->labels.insert(dst->labels.end(), src.labels.begin(), src.labels.end());
  dst->weights.insert(dst->weights.end(), src.weights.begin(), src.weights.end());
  uint64_t base = dst->features.size() - src.offsets[0];
  for (size_t r = 1; r < src.offsets.size(); ++r) dst->offsets.push_back(src.offsets[r] + base);
  dst->features.insert(dst->features.end(), src.features.begin() + src.offsets[0], src.features.end());
}

uint64_t HeaderIndexChecksum(const CacheHeader& h, const void* index, size_t index_bytes) {
  CacheHeader copy = h;
  copy.checksum = 0;
  XXH64_state_t* st = XXH64_createState();
  XXH64_reset(st, 0);
  XXH64_update(st, &copy, sizeof(copy));
  XXH64_update(st, index, index_bytes);
  uint64_t sum = XXH64_digest(st);
  XXH64_freeState(st);
  return sum;
}

// Checks the header and index of a mapped cache; fills *info.
Status ValidateLayout(const std::string& path, const uint8_t* data, uint64_t size, CacheInfo* info) {
  if (size < sizeof(CacheHeader)) {
    if (size >= sizeof(cache_format::kMagic) && std::memcmp(data, cache_format::kMagic, 8) != 0)
      return Status::Corruption(path + ": not a fieldfm cache (bad magic)");
    return Status::Corruption(path + ": truncated cache (" + std::to_string(size) + " bytes, smaller than the header)");
  }
  CacheHeader h;
  std::memcpy(&h, data, sizeof(h));
  if (std::memcmp(h.magic, cache_format::kMagic, 8) != 0)
    return Status::Corruption(path + ": not a fieldfm cache (bad magic)");
  if (h.version < cache_format::kOldestVersion || h.version > cache_format::kVersion)
    return Status::Corruption(path + ": cache format version " + std::to_string(h.version) + ", this build reads versions " +
                              std::to_string(cache_format::kOldestVersion) + " to " +
                              std::to_string(cache_format::kVersion) + "; rebuild the cache");
  if (h.header_size != sizeof(CacheHeader)) return Status::Corruption(path + ": bad header size");
  if (h.file_size != size)
    return Status::Corruption(path + ": truncated or extended cache (file has " + std::to_string(size) +
                              " bytes, header says " + std::to_string(h.file_size) + ")");
  const uint64_t max_blocks = size / sizeof(BlockIndexEntry);
  if (h.num_blocks > max_blocks || h.index_offset < sizeof(CacheHeader) || h.index_offset > size ||
      size - h.index_offset < h.num_blocks * sizeof(BlockIndexEntry))
    return Status::Corruption(path + ": block index out of bounds");
  const uint8_t* index = data + h.index_offset;
  const size_t index_bytes = h.num_blocks * sizeof(BlockIndexEntry);
  if (HeaderIndexChecksum(h, index, index_bytes) != h.checksum)
    return Status::Corruption(path + ": header checksum mismatch (corrupt cache)");
  uint64_t rows = 0, feats = 0, prev_end = sizeof(CacheHeader);
  for (uint64_t b = 0; b < h.num_blocks; ++b) {
    BlockIndexEntry e;
    std::memcpy(&e, index + b * sizeof(e), sizeof(e));
    // Bounds before arithmetic, so a hostile entry cannot overflow.
    if (e.rows > size || e.features > size || e.offset % cache_format::kAlign != 0 || e.offset < prev_end)
      return Status::Corruption(path + ": bad block index entry " + std::to_string(b));
    BlockLayout l = BlockLayout::For(e.rows, e.features);
    if (e.offset > h.index_offset || h.index_offset - e.offset < l.size)
      return Status::Corruption(path + ": block " + std::to_string(b) + " extends past the data section");
    prev_end = e.offset + l.size;
    rows += e.rows;
    feats += e.features;
  }
  if (rows != h.rows || feats != h.features) return Status::Corruption(path + ": block index does not add up to the header counts");
  info->version = h.version;
  info->key = CacheKey{h.source_size, h.source_mtime_ns, h.fingerprint};
  info->rows = h.rows;
  info->features = h.features;
  info->num_blocks = h.num_blocks;
  info->max_field = h.max_field;
  info->max_index = h.max_index;
  info->label_min = h.label_min;
  info->label_max = h.label_max;
  info->label_sum = h.label_sum;
  info->weight_sum = h.weight_sum;
  info->weighted_label_sum = h.weighted_label_sum;
  info->file_size = h.file_size;
  return Status::Ok();
}

}  // namespace

namespace {

// A whole file mapped read-only.
struct MappedFile {
  std::string path;
  const uint8_t* data = nullptr;
  uint64_t size = 0;
  int fd = -1;  // kept open: CacheSource reads blocks with pread

  MappedFile() = default;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() {
    if (data) ::munmap(const_cast<uint8_t*>(data), size);
    if (fd >= 0) ::close(fd);
  }

  static Result<std::unique_ptr<MappedFile>> Map(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      std::string msg = "cannot open cache " + path + ": " + std::strerror(err);
      return err == ENOENT ? Status::NotFound(msg) : Status::IOError(msg);
    }
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      std::string msg = "cannot stat " + path + ": " + ErrnoText();
      ::close(fd);
      return Status::IOError(msg);
    }
    auto m = std::make_unique<MappedFile>();
    m->path = path;
    m->size = static_cast<uint64_t>(st.st_size);
    if (m->size > 0) {
      void* p = ::mmap(nullptr, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        std::string msg = "cannot mmap " + path + ": " + ErrnoText();
        ::close(fd);
        return Status::IOError(msg);
      }
      m->data = static_cast<const uint8_t*>(p);
      ::madvise(p, m->size, MADV_SEQUENTIAL);
    }
    m->fd = fd;
    return m;
  }
};

}  // namespace

// Memory a block is read into: 2 MiB aligned and on 2 MiB pages.
struct BlockBuffer {
  uint8_t* p = nullptr;
  size_t capacity = 0;
};

// The mapped cache plus per-block verification flags, and the blocks that
// Next and NextViews have read into buffers.
//
// Why read and not map: on a VM kind seen here (a PVM guest, family-26 EPYC)
// touching a mapped 923 MB cache block by block, dropping each block's pages
// after use, took 0.59-0.63 s; pread of the same blocks into one reused 8 MiB
// buffer on 2 MiB pages 0.10-0.13 s (bench/RESULTS.md, session 10). Every
// epoch and every predict paid the mapped figure, in page faults and in
// misses of a TLB holding 4 KiB pages.
struct CacheSource::Mapping {
  std::unique_ptr<MappedFile> file;
  // A copy of the block index, so the read path never touches the mapping
  // (a file cut short while open is then an I/O error, not SIGBUS).
  std::vector<BlockIndexEntry> entries;
  std::unique_ptr<std::atomic<uint8_t>[]> verified;  // 0 unknown, 1 good, 2 bad
  std::mutex mu;  // guards loaded and free_buffers
  std::unordered_map<size_t, BlockBuffer> loaded;
  std::vector<BlockBuffer> free_buffers;

  ~Mapping() {
    for (auto& [b, buf] : loaded) std::free(buf.p);
    for (BlockBuffer& buf : free_buffers) std::free(buf.p);
  }

  BlockBuffer TakeBuffer(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu);
      for (size_t j = 0; j < free_buffers.size(); ++j)
        if (free_buffers[j].capacity >= bytes) {
          BlockBuffer b = free_buffers[j];
          free_buffers[j] = free_buffers.back();
          free_buffers.pop_back();
          return b;
        }
    }
    constexpr size_t kHuge = size_t(2) << 20;
    BlockBuffer b;
    b.capacity = std::max(kHuge, (bytes + kHuge - 1) / kHuge * kHuge);
    b.p = static_cast<uint8_t*>(std::aligned_alloc(kHuge, b.capacity));
    if (b.p) {
#ifdef MADV_HUGEPAGE
      ::madvise(b.p, b.capacity, MADV_HUGEPAGE);
#endif
    } else {
      b.capacity = 0;
    }
    return b;
  }
  void GiveBack(BlockBuffer b) {
    std::lock_guard<std::mutex> lock(mu);
    free_buffers.push_back(b);
  }

  BlockIndexEntry entry(size_t i) const { return entries[i]; }
};

Result<CacheKey> CacheKeyForFile(const std::string& source_path, uint64_t fingerprint) {
  struct stat st;
  if (::stat(source_path.c_str(), &st) != 0) {
    std::string msg = "cannot stat " + source_path + ": " + ErrnoText();
    return errno == ENOENT ? Status::NotFound(msg) : Status::IOError(msg);
  }
  CacheKey key;
  key.source_size = static_cast<uint64_t>(st.st_size);
  key.source_mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
  key.fingerprint = fingerprint;
  return key;
}

Status BuildCache(ExampleSource& src, const CacheKey& key, const std::string& out_path, size_t block_rows) {
  if (block_rows == 0 || block_rows > (1u << 30)) return Status::InvalidArgument("cache block_rows must be in [1, 2^30]");
  AtomicFile file;
  FIELDFM_RETURN_IF_ERROR(file.Open(out_path));
  BlockWriter w(&file);
  CacheHeader h{};
  std::memcpy(h.magic, cache_format::kMagic, 8);
  h.version = cache_format::kVersion;
  h.header_size = sizeof(CacheHeader);
  h.source_size = key.source_size;
  h.source_mtime_ns = key.source_mtime_ns;
  h.fingerprint = key.fingerprint;
  h.label_min = std::numeric_limits<double>::infinity();
  h.label_max = -std::numeric_limits<double>::infinity();
  FIELDFM_RETURN_IF_ERROR(w.Write(&h, sizeof(h), nullptr));  // placeholder, rewritten at the end

  std::vector<BlockIndexEntry> index;
  XXH3_state_t* hash = XXH3_createState();
  auto write_block = [&](const ExampleBlock& b) -> Status {
    const uint64_t rows = b.rows(), nnz = b.features.size();
    BlockLayout l = BlockLayout::For(rows, nnz);
    FIELDFM_RETURN_IF_ERROR(w.PadTo(AlignUp(w.pos()), nullptr));
    BlockIndexEntry e{w.pos(), rows, nnz, 0};
    XXH3_64bits_reset(hash);
    FIELDFM_RETURN_IF_ERROR(w.Write(b.labels.data(), rows * sizeof(float), hash));
    FIELDFM_RETURN_IF_ERROR(w.Write(b.weights.data(), rows * sizeof(float), hash));
    FIELDFM_RETURN_IF_ERROR(w.PadTo(e.offset + l.offsets, hash));
    FIELDFM_RETURN_IF_ERROR(w.Write(b.offsets.data(), (rows + 1) * sizeof(uint64_t), hash));
    FIELDFM_RETURN_IF_ERROR(w.Write(b.features.data(), nnz * sizeof(Feature), hash));
    e.checksum = XXH3_64bits_digest(hash);
    index.push_back(e);
    for (size_t r = 0; r < rows; ++r) {
      const double y = b.labels[r], wt = b.weights[r];
      h.label_min = std::min(h.label_min, y);
      h.label_max = std::max(h.label_max, y);
      h.label_sum += y;
      h.weight_sum += wt;
      h.weighted_label_sum += wt * y;
    }
    for (const Feature& f : b.features) {
      h.max_field = std::max(h.max_field, f.field + 1);
      h.max_index = std::max<uint64_t>(h.max_index, uint64_t{f.index} + 1);
    }
    h.rows += rows;
    h.features += nnz;
    return Status::Ok();
  };

  ExampleBlock pending, chunk;
  Status st;
  while (st.ok()) {
    auto got = src.Next(&chunk, block_rows - pending.rows());
    if (!got.ok()) {
      st = got.status();
      break;
    }
    if (*got == 0) break;
    if (pending.empty() && chunk.offsets[0] == 0) {
      std::swap(pending, chunk);
    } else {
      AppendBlock(chunk, &pending);
    }
    if (pending.rows() >= block_rows) {
      st = write_block(pending);
      pending.clear();
    }
  }
  if (st.ok() && !pending.empty()) st = write_block(pending);
  XXH3_freeState(hash);
  FIELDFM_RETURN_IF_ERROR(st.WithContext("building cache " + out_path));

  if (h.rows == 0) h.label_min = h.label_max = 0;
  FIELDFM_RETURN_IF_ERROR(w.PadTo(AlignUp(w.pos()), nullptr));
  h.index_offset = w.pos();
  h.num_blocks = index.size();
  const size_t index_bytes = index.size() * sizeof(BlockIndexEntry);
  FIELDFM_RETURN_IF_ERROR(w.Write(index.data(), index_bytes, nullptr));
  h.file_size = w.pos();
  h.checksum = HeaderIndexChecksum(h, index.data(), index_bytes);
  if (std::fseek(file.file(), 0, SEEK_SET) != 0) return Status::IOError("cannot seek in " + out_path + ": " + ErrnoText());
  FIELDFM_RETURN_IF_ERROR(file.Write(&h, sizeof(h)));
  return file.Commit();
}

bool IsCacheFile(const std::string& path) {
  char head[sizeof(cache_format::kMagic)] = {};
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;  // the caller's reader reports the open error
  const size_t n = std::fread(head, 1, sizeof head, f);
  std::fclose(f);
  return n == sizeof head && std::memcmp(head, cache_format::kMagic, sizeof head) == 0;
}

Result<CacheInfo> ReadCacheInfo(const std::string& cache_path) {
  FIELDFM_ASSIGN_OR_RETURN(auto file, MappedFile::Map(cache_path));
  CacheInfo info;
  FIELDFM_RETURN_IF_ERROR(ValidateLayout(cache_path, file->data, file->size, &info));
  return info;
}

Result<bool> CacheIsFresh(const std::string& cache_path, const CacheKey& key) {
  auto info = ReadCacheInfo(cache_path);
  if (!info.ok()) {
    const StatusCode c = info.status().code();
    if (c == StatusCode::kNotFound || c == StatusCode::kCorruption) return false;
    return info.status();
  }
  return info->key == key;
}

// ---------------------------------------------------------------------------

CacheSource::CacheSource(std::unique_ptr<Mapping> mapping, CacheInfo info) : map_(std::move(mapping)), info_(info) {
  stats_.max_field = info_.max_field;
  stats_.max_index = info_.max_index;
  ClearShuffle();
}

CacheSource::~CacheSource() = default;

Result<std::unique_ptr<CacheSource>> CacheSource::Open(const std::string& path) {
  FIELDFM_ASSIGN_OR_RETURN(auto file, MappedFile::Map(path));
  CacheInfo info;
  FIELDFM_RETURN_IF_ERROR(ValidateLayout(path, file->data, file->size, &info));
  CacheHeader h;
  std::memcpy(&h, file->data, sizeof(h));
  auto map = std::make_unique<Mapping>();
  map->entries.resize(info.num_blocks);
  if (info.num_blocks)
    std::memcpy(map->entries.data(), file->data + h.index_offset, info.num_blocks * sizeof(BlockIndexEntry));
  map->file = std::move(file);
  map->verified = std::make_unique<std::atomic<uint8_t>[]>(info.num_blocks);
  for (size_t i = 0; i < info.num_blocks; ++i) map->verified[i].store(0, std::memory_order_relaxed);
  return std::unique_ptr<CacheSource>(new CacheSource(std::move(map), info));
}

size_t CacheSource::num_blocks() const { return info_.num_blocks; }

namespace {

BatchView ViewOf(const uint8_t* base, const BlockIndexEntry& e) {
  const BlockLayout l = BlockLayout::For(e.rows, e.features);
  BatchView v;
  v.labels = reinterpret_cast<const float*>(base + l.labels);
  v.weights = reinterpret_cast<const float*>(base + l.weights);
  v.offsets = reinterpret_cast<const uint64_t*>(base + l.offsets);
  v.features = reinterpret_cast<const Feature*>(base + l.features);
  v.rows = e.rows;
  return v;
}

// The checksum (of the file's format version), and offsets that stay inside the block.
bool BlockGood(const uint8_t* base, const BlockIndexEntry& e, uint32_t version) {
  const BatchView v = ViewOf(base, e);
  const size_t n = BlockLayout::For(e.rows, e.features).size;
  const uint64_t sum = version >= 2 ? XXH3_64bits_dispatch(base, n) : XXH64(base, n, 0);
  bool good = sum == e.checksum && v.offsets[0] == 0 && v.offsets[e.rows] == e.features;
  for (size_t r = 0; good && r < e.rows; ++r) good = v.offsets[r] <= v.offsets[r + 1];
  return good;
}

}  // namespace

Status CacheSource::CheckedState(size_t i, const uint8_t* base) const {
  uint8_t state = map_->verified[i].load(std::memory_order_acquire);
  if (state == 0) {
    state = BlockGood(base, map_->entry(i), info_.version) ? 1 : 2;
    map_->verified[i].store(state, std::memory_order_release);
  }
  if (state != 1) return Status::Corruption(map_->file->path + ": block " + std::to_string(i) + " checksum mismatch (corrupt cache)");
  return Status::Ok();
}

Result<BatchView> CacheSource::block(size_t i) const {
  if (i >= info_.num_blocks) return Status::InvalidArgument("cache block " + std::to_string(i) + " out of range");
  const BlockIndexEntry e = map_->entry(i);
  const uint8_t* base = map_->file->data + e.offset;
  FIELDFM_RETURN_IF_ERROR(CheckedState(i, base));
  return ViewOf(base, e);
}

Result<BatchView> CacheSource::LoadedBlock(size_t i) const {
  if (i >= info_.num_blocks) return Status::InvalidArgument("cache block " + std::to_string(i) + " out of range");
  const BlockIndexEntry e = map_->entry(i);
  {
    std::lock_guard<std::mutex> lock(map_->mu);
    auto it = map_->loaded.find(i);
    if (it != map_->loaded.end()) return ViewOf(it->second.p, e);
  }
  const size_t bytes = BlockLayout::For(e.rows, e.features).size;
  const std::string& path = map_->file->path;
  BlockBuffer buf = map_->TakeBuffer(bytes);
  if (!buf.p)
    return Status::IOError(path + ": cannot allocate " + std::to_string(bytes) + " bytes for block " + std::to_string(i));
  for (size_t done = 0; done < bytes;) {
    const ssize_t r = ::pread(map_->file->fd, buf.p + done, bytes - done, off_t(e.offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      const std::string why = r < 0 ? ErrnoText() : "the file ends early (truncated while open?)";
      map_->GiveBack(buf);
      return Status::IOError(path + ": cannot read block " + std::to_string(i) + ": " + why);
    }
    done += size_t(r);
  }
  if (Status st = CheckedState(i, buf.p); !st.ok()) {
    map_->GiveBack(buf);
    return st;
  }
  std::lock_guard<std::mutex> lock(map_->mu);
  auto [it, inserted] = map_->loaded.emplace(i, buf);
  if (!inserted) map_->free_buffers.push_back(buf);  // another thread read it first
  return ViewOf(it->second.p, e);
}

void CacheSource::RowOrder(size_t block_index, std::vector<uint32_t>* order) const {
  const size_t rows = map_->entry(block_index).rows;
  if (!shuffled_) {
    order->resize(rows);
    for (size_t r = 0; r < rows; ++r) (*order)[r] = static_cast<uint32_t>(r);
    return;
  }
  Permutation(rows, HashCombine(HashCombine(shuffle_seed_, epoch_), block_index + 1), order);
}

void CacheSource::SetShuffle(uint64_t seed, uint32_t epoch) {
  shuffled_ = true;
  shuffle_seed_ = seed;
  epoch_ = epoch;
  Permutation(info_.num_blocks, HashCombine(HashCombine(seed, epoch), 0), &block_order_);
  (void)Rewind();
}

void CacheSource::ClearShuffle() {
  shuffled_ = false;
  block_order_.resize(info_.num_blocks);
  for (size_t i = 0; i < block_order_.size(); ++i) block_order_[i] = static_cast<uint32_t>(i);
  (void)Rewind();
}

Status CacheSource::Rewind() {
  ReleaseFinishedViews(/*all=*/true);
  cursor_block_ = 0;
  cursor_row_ = 0;
  row_order_block_ = SIZE_MAX;
  stats_.rows = 0;
  stats_.bytes = 0;
  return Status::Ok();
}

void CacheSource::ReleaseFinishedViews(bool all) {
  size_t kept = 0;
  for (const auto& [call, b] : views_done_) {
    if (all || call + uint64_t(views_kept_) <= views_calls_) {
      ReleaseBlockPages(b);
    } else {
      views_done_[kept++] = {call, b};
    }
  }
  views_done_.resize(kept);
}

void CacheSource::ReleaseBlockPages(size_t i) const {
  {
    std::lock_guard<std::mutex> lock(map_->mu);
    auto it = map_->loaded.find(i);
    if (it != map_->loaded.end()) {
      map_->free_buffers.push_back(it->second);
      map_->loaded.erase(it);
    }
  }
  // The mapping is private and never written: pages dropped here come back
  // from the file (usually still in the page cache) if a view reads them again.
  const BlockIndexEntry e = map_->entry(i);
  const uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
  const uint64_t base = reinterpret_cast<uintptr_t>(map_->file->data);
  const uint64_t begin = (base + e.offset + page - 1) / page * page;
  const uint64_t end = (base + e.offset + BlockLayout::For(e.rows, e.features).size) / page * page;
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

Result<size_t> CacheSource::Next(ExampleBlock* out, size_t max_rows) {
  out->clear();
  while (out->rows() < max_rows && cursor_block_ < block_order_.size()) {
    const size_t b = block_order_[cursor_block_];
    FIELDFM_ASSIGN_OR_RETURN(BatchView v, LoadedBlock(b));
    const size_t take = std::min(max_rows - out->rows(), v.rows - cursor_row_);
    const size_t begin = cursor_row_, end = cursor_row_ + take;
    if (!shuffled_) {
      // Contiguous rows: bulk copies.
      out->labels.insert(out->labels.end(), v.labels + begin, v.labels + end);
      out->weights.insert(out->weights.end(), v.weights + begin, v.weights + end);
      const uint64_t base = out->features.size() - v.offsets[begin];
      for (size_t r = begin + 1; r <= end; ++r) out->offsets.push_back(v.offsets[r] + base);
      out->features.insert(out->features.end(), v.features + v.offsets[begin], v.features + v.offsets[end]);
      stats_.bytes += take * (2 * sizeof(float) + sizeof(uint64_t)) + (v.offsets[end] - v.offsets[begin]) * sizeof(Feature);
    } else {
      if (row_order_block_ != b) {
        RowOrder(b, &row_order_);
        row_order_block_ = b;
      }
      for (size_t i = begin; i < end; ++i) {
        const uint32_t r = row_order_[i];
        out->add(v.labels[r], v.weights[r], v.row(r));
        stats_.bytes += 2 * sizeof(float) + sizeof(uint64_t) + v.row(r).size() * sizeof(Feature);
      }
    }
    cursor_row_ = end;
    if (cursor_row_ == v.rows) {
      ReleaseBlockPages(b);
      ++cursor_block_;
      cursor_row_ = 0;
    }
  }
  stats_.rows += out->rows();
  return out->rows();
}

void CacheSource::VerifyAhead(size_t max_rows) const {
  std::vector<size_t> todo;
  size_t rows = 0;
  for (size_t pos = cursor_block_; pos < block_order_.size(); ++pos) {
    if (rows >= max_rows && todo.size() >= size_t(verify_threads_)) break;
    const size_t b = block_order_[pos];
    rows += map_->entry(b).rows - (pos == cursor_block_ ? cursor_row_ : 0);
    std::lock_guard<std::mutex> lock(map_->mu);
    if (!map_->loaded.count(b)) todo.push_back(b);
  }
  if (todo.size() < 2) return;
  ParallelParts(todo.size(), verify_threads_, [&](int, size_t begin, size_t end) {
    for (size_t j = begin; j < end; ++j) (void)LoadedBlock(todo[j]);  // an error is reported again by the view
  });
}

Result<size_t> CacheSource::NextViews(std::vector<BatchView>* segments, size_t max_rows) {
  if (shuffled_) return Status::InvalidArgument("cache views are in storage order; shuffle rows in the trainer");
  ++views_calls_;
  ReleaseFinishedViews();
  if (verify_threads_ > 1) VerifyAhead(max_rows);
  segments->clear();
  size_t rows = 0;
  while (rows < max_rows && cursor_block_ < block_order_.size()) {
    const size_t b = block_order_[cursor_block_];
    FIELDFM_ASSIGN_OR_RETURN(BatchView v, LoadedBlock(b));
    const size_t take = std::min(max_rows - rows, v.rows - cursor_row_);
    segments->push_back(v.slice(cursor_row_, cursor_row_ + take));
    stats_.bytes += take * (2 * sizeof(float) + sizeof(uint64_t)) +
                    (v.offsets[cursor_row_ + take] - v.offsets[cursor_row_]) * sizeof(Feature);
    rows += take;
    cursor_row_ += take;
    if (cursor_row_ == v.rows) {
      views_done_.emplace_back(views_calls_, b);
      ++cursor_block_;
      cursor_row_ = 0;
    }
  }
  stats_.rows += rows;
  return rows;
}

Result<std::unique_ptr<CacheSource>> OpenOrBuildCache(const std::string& cache_path, const CacheKey& key,
                                                      const SourceFactory& make_source, size_t block_rows,
                                                      bool* rebuilt) {
  FIELDFM_ASSIGN_OR_RETURN(bool fresh, CacheIsFresh(cache_path, key));
  if (!fresh) {
    FIELDFM_ASSIGN_OR_RETURN(std::unique_ptr<ExampleSource> src, make_source());
    FIELDFM_RETURN_IF_ERROR(BuildCache(*src, key, cache_path, block_rows));
  }
  if (rebuilt) *rebuilt = !fresh;
  return CacheSource::Open(cache_path);
}

}  // namespace fieldfm
