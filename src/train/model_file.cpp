// Model file layout (little-endian):
//   header, 32 bytes: magic "FFMMODEL", u32 format version, u32 kind
//                     (1 model, 2 checkpoint), u64 payload bytes, u64 checksum of
//                     the payload: XXH3 (64 bits) from version 2 on, XXH64 in
//                     version 1, which is still read (XXH3 through libxxhash's
//                     runtime dispatch hashed 46 GB/s here, XXH64 10.7)
//   payload: sections, each u32 name length, name, u64 data length, data.
//   A "pad/<name>" section of zeros before each "sparse/<name>" puts that
//   table's data on a 64-byte boundary of the file, so inference maps it in place.
// Sections: "meta" (JSON: spec, training, unseen rule, state floats),
// "pipeline", "counts", "field_of", "sparse/<name>", "unseen/<name>",
// "dense/<name>" and, in checkpoints, "dense_s1/<name>", "dense_s2/<name>",
// "train_state", "best_sparse/<name>", "best_dense/<name>".
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <xxh_x86dispatch.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "train/best_snapshot.h"
#include "train/model_data.h"
#include "util/atomic_file.h"

namespace fieldfm {

namespace {

constexpr char kMagic[8] = {'F', 'F', 'M', 'M', 'O', 'D', 'E', 'L'};
constexpr uint32_t kVersion = 2;        // written
constexpr uint32_t kOldestVersion = 1;  // still read
constexpr uint32_t kKindModel = 1, kKindCheckpoint = 2;
constexpr size_t kHeaderBytes = 32;
constexpr size_t kSparseAlign = 64;  // sparse table data starts on a cache line of the file

class SectionWriter {
 public:
  explicit SectionWriter(AtomicFile* f) : f_(f), state_(XXH3_createState()) { XXH3_64bits_reset(state_); }
  ~SectionWriter() { XXH3_freeState(state_); }
  Status Add(std::string_view name, const void* data, uint64_t n) {
    FIELDFM_RETURN_IF_ERROR(Begin(name, n));
    FIELDFM_RETURN_IF_ERROR(Append(data, n));
    return End();
  }
  // A section of n bytes written in pieces by Append, then End.
  Status Begin(std::string_view name, uint64_t n) {
    const uint32_t len = uint32_t(name.size());
    FIELDFM_RETURN_IF_ERROR(Raw(&len, sizeof len));
    FIELDFM_RETURN_IF_ERROR(Raw(name.data(), len));
    FIELDFM_RETURN_IF_ERROR(Raw(&n, sizeof n));
    section_left_ = n;
    return Status::Ok();
  }
  Status Append(const void* p, uint64_t n) {
    if (n > section_left_) return Status::Internal("model file section longer than announced");
    section_left_ -= n;
    return Raw(p, n);
  }
  Status End() {
    if (section_left_ != 0) return Status::Internal("model file section shorter than announced");
    return Status::Ok();
  }
  Status Add(std::string_view name, std::string_view s) { return Add(name, s.data(), s.size()); }
  // Writes a section `pad_name` of zero bytes such that the data of a
  // section named `next` written right after it starts kSparseAlign-aligned
  // in the file (readers skip sections they do not know).
  Status AlignNext(std::string_view pad_name, std::string_view next) {
    const uint64_t headers = 2 * (sizeof(uint32_t) + sizeof(uint64_t)) + pad_name.size() + next.size();
    const uint64_t pad = (kSparseAlign - (kHeaderBytes + bytes_ + headers) % kSparseAlign) % kSparseAlign;
    static constexpr char kZeros[kSparseAlign] = {};
    return Add(pad_name, kZeros, pad);
  }
  template <typename T, typename A>
  Status Add(std::string_view name, const std::vector<T, A>& v) {
    return Add(name, v.data(), v.size() * sizeof(T));
  }
  uint64_t bytes() const { return bytes_; }
  uint64_t digest() const { return XXH3_64bits_digest(state_); }

 private:
  Status Raw(const void* p, uint64_t n) {
    if (n == 0) return Status::Ok();
    XXH3_64bits_update_dispatch(state_, p, n);
    bytes_ += n;
    return f_->Write(p, n);
  }
  AtomicFile* f_;
  XXH3_state_t* state_;
  uint64_t bytes_ = 0;
  uint64_t section_left_ = 0;
};

// A table's weights without their optimizer state, copied out a piece at a
// time: built whole, that array would be as large as the parameters and
// raise the peak memory of every save by as much.
Status AddWeights(SectionWriter* w, const std::string& name, const SparseTable& t) {
  const uint64_t slots = t.rows * t.slots;
  FIELDFM_RETURN_IF_ERROR(w->Begin(name, slots * t.k * sizeof(float)));
  constexpr uint64_t kSlotsPerPiece = 4096;
  std::vector<float> piece;
  for (uint64_t first = 0; first < slots; first += kSlotsPerPiece) {
    const uint64_t n = std::min(kSlotsPerPiece, slots - first);
    piece.resize(n * t.k);
    t.CopyWeights(first, n, piece.data());
    FIELDFM_RETURN_IF_ERROR(w->Append(piece.data(), piece.size() * sizeof(float)));
  }
  return w->End();
}

// The best epoch's sparse weights, from the snapshot file into the checkpoint.
Status AddBestSparse(SectionWriter* w, const TrainState& state) {
  SnapshotReader r;
  FIELDFM_RETURN_IF_ERROR(r.Open(state.best_sparse_path, state.best_sparse_tag));
  constexpr uint64_t kFloatsPerPiece = 1 << 14;
  std::vector<float> piece;
  for (const SnapshotTable& t : r.tables()) {
    FIELDFM_RETURN_IF_ERROR(w->Begin("best_sparse/" + t.name, t.floats * sizeof(float)));
    for (uint64_t first = 0; first < t.floats; first += kFloatsPerPiece) {
      piece.resize(std::min(kFloatsPerPiece, t.floats - first));
      FIELDFM_RETURN_IF_ERROR(r.Read(piece.data(), piece.size()));
      FIELDFM_RETURN_IF_ERROR(w->Append(piece.data(), piece.size() * sizeof(float)));
    }
    FIELDFM_RETURN_IF_ERROR(w->End());
  }
  // Checked before the checkpoint is committed: a corrupted snapshot never
  // reaches it.
  return r.Finish();
}

template <typename T, typename A>
Status Decode(std::string_view name, std::string_view data, std::vector<T, A>* out, size_t expected) {
  if (data.size() != expected * sizeof(T))
    return Status::Corruption(fmt::format("section '{}' has {} bytes, expected {}", name, data.size(),
                                          expected * sizeof(T)));
  out->resize(expected);
  if (expected) std::memcpy(out->data(), data.data(), data.size());
  return Status::Ok();
}

}  // namespace

Status WriteModelFile(const std::string& path, const Model& m, const TrainState* state) {
  const bool checkpoint = state != nullptr;
  nlohmann::json meta{{"spec", m.spec.ToJson()},
                      {"training", m.training},
                      {"min_count", m.min_count},
                      {"unseen", Name(m.unseen)},
                      {"use_weights", m.use_weights},
                      {"state", checkpoint ? m.store.state : 0},
                      {"slot_state", checkpoint ? m.store.slot_state : 0},
                      {"step", m.store.step}};
  AtomicFile f;
  FIELDFM_RETURN_IF_ERROR(f.Open(path));
  char header[kHeaderBytes] = {};
  FIELDFM_RETURN_IF_ERROR(f.Write(header, sizeof header));  // rewritten once the checksum is known
  SectionWriter w(&f);
  FIELDFM_RETURN_IF_ERROR(w.Add("meta", meta.dump()));
  FIELDFM_RETURN_IF_ERROR(w.Add("pipeline", m.pipeline_json));
  FIELDFM_RETURN_IF_ERROR(w.Add("counts", m.counts));
  FIELDFM_RETURN_IF_ERROR(w.Add("field_of", m.field_of));
  for (const auto& [name, t] : m.store.sparse) {
    FIELDFM_RETURN_IF_ERROR(w.AlignNext("pad/" + name, "sparse/" + name));
    if (checkpoint) {
      FIELDFM_RETURN_IF_ERROR(w.Add("sparse/" + name, t.data));
    } else {
      FIELDFM_RETURN_IF_ERROR(AddWeights(&w, "sparse/" + name, t));
    }
    FIELDFM_RETURN_IF_ERROR(w.Add("unseen/" + name, t.unseen));
  }
  for (const auto& [name, p] : m.store.dense) {
    FIELDFM_RETURN_IF_ERROR(w.Add("dense/" + name, p.w));
    if (checkpoint) {
      FIELDFM_RETURN_IF_ERROR(w.Add("dense_s1/" + name, p.s1));
      FIELDFM_RETURN_IF_ERROR(w.Add("dense_s2/" + name, p.s2));
    }
  }
  if (checkpoint) {
    nlohmann::json ts{{"epochs_done", state->epochs_done},
                      {"best_epoch", state->best_epoch},
                      {"best_score", state->best_score},
                      {"bad_epochs", state->bad_epochs},
                      {"history", nlohmann::json::array()}};
    for (const auto& r : state->history) ts["history"].push_back(ReportToJson(r));
    FIELDFM_RETURN_IF_ERROR(w.Add("train_state", ts.dump()));
    if (state->best_sparse_tag != 0) FIELDFM_RETURN_IF_ERROR(AddBestSparse(&w, *state));
    for (const auto& [name, v] : state->best_dense) FIELDFM_RETURN_IF_ERROR(w.Add("best_dense/" + name, v));
  }
  std::memcpy(header, kMagic, 8);
  const uint32_t kind = checkpoint ? kKindCheckpoint : kKindModel;
  const uint64_t bytes = w.bytes(), digest = w.digest();
  std::memcpy(header + 8, &kVersion, 4);
  std::memcpy(header + 12, &kind, 4);
  std::memcpy(header + 16, &bytes, 8);
  std::memcpy(header + 24, &digest, 8);
  if (std::fflush(f.file()) != 0 || std::fseek(f.file(), 0, SEEK_SET) != 0)
    return Status::IOError(path + ": cannot rewrite the header");
  FIELDFM_RETURN_IF_ERROR(f.Write(header, sizeof header));
  return f.Commit();
}

namespace {

// The whole file, mapped private (copy-on-write: a write to a weight never
// reaches the file) and populated in one pass. Inference tables point into
// it; everything else is copied out. A file truncated in place while mapped
// raises SIGBUS, so only short-lived commands map (fieldfm itself replaces
// model files by rename, which leaves a mapping intact).
Result<std::shared_ptr<void>> MapFile(const std::string& path, size_t* size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IOError(fmt::format("{}: cannot open ({})", path, std::strerror(errno)));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::IOError(path + ": not a regular file");
  }
  *size = size_t(st.st_size);
  if (*size < kHeaderBytes) {
    ::close(fd);
    return Status::Corruption(path + ": not a fieldfm model file (no FFMMODEL header)");
  }
  // Populated read-only, then made writable: populating a writable private
  // mapping would copy every page up front.
  void* p = ::mmap(nullptr, *size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
  int err = errno;
  ::close(fd);  // the mapping keeps the file open
  if (p == MAP_FAILED) return Status::IOError(fmt::format("{}: cannot map ({})", path, std::strerror(err)));
  if (::mprotect(p, *size, PROT_READ | PROT_WRITE) != 0) {
    err = errno;
    ::munmap(p, *size);
    return Status::IOError(fmt::format("{}: cannot map ({})", path, std::strerror(err)));
  }
  const size_t n = *size;
  return std::shared_ptr<void>(p, [n](void* q) { ::munmap(q, n); });
}

// The whole file read into memory: a file rewritten while it is read gives
// a checksum error here, never a signal.
Result<std::shared_ptr<void>> ReadFile(const std::string& path, size_t* size) {
  std::FILE* fp = std::fopen(path.c_str(), "rb");
  if (!fp) return Status::IOError(fmt::format("{}: cannot open ({})", path, std::strerror(errno)));
  auto buf = std::make_shared<std::string>();
  char chunk[1 << 16];
  size_t n;
  while ((n = std::fread(chunk, 1, sizeof chunk, fp)) > 0) buf->append(chunk, n);
  const bool read_error = std::ferror(fp);
  std::fclose(fp);
  if (read_error) return Status::IOError(path + ": read error");
  *size = buf->size();
  return std::shared_ptr<void>(buf, buf->data());
}

}  // namespace

Status ReadModelFile(const std::string& path, Model* m, TrainState* state, bool map_in_place) {
  map_in_place = map_in_place && !state;
  size_t file_size = 0;
  FIELDFM_ASSIGN_OR_RETURN(std::shared_ptr<void> mapping,
                           map_in_place ? MapFile(path, &file_size) : ReadFile(path, &file_size));
  const std::string_view buf(static_cast<const char*>(mapping.get()), file_size);
  auto bad = [&](const std::string& what) { return Status::Corruption(path + ": " + what); };
  if (buf.size() < kHeaderBytes || std::memcmp(buf.data(), kMagic, 8) != 0)
    return bad("not a fieldfm model file (no FFMMODEL header)");
  uint32_t version, kind;
  uint64_t bytes, digest;
  std::memcpy(&version, buf.data() + 8, 4);
  std::memcpy(&kind, buf.data() + 12, 4);
  std::memcpy(&bytes, buf.data() + 16, 8);
  std::memcpy(&digest, buf.data() + 24, 8);
  if (version < kOldestVersion || version > kVersion)
    return bad(fmt::format("unsupported model format version {} (this build reads versions {} to {})", version,
                           kOldestVersion, kVersion));
  if (kind != kKindModel && kind != kKindCheckpoint) return bad(fmt::format("unknown file kind {}", kind));
  if (state && kind != kKindCheckpoint) return bad("a model file, not a training checkpoint");
  if (buf.size() - kHeaderBytes != bytes)
    return bad(fmt::format("truncated or padded model file ({} payload bytes, header says {})",
                           buf.size() - kHeaderBytes, bytes));
  const std::string_view payload(buf.data() + kHeaderBytes, bytes);
  const uint64_t sum = version >= 2 ? XXH3_64bits_dispatch(payload.data(), payload.size())
                                     : XXH64(payload.data(), payload.size(), 0);
  if (sum != digest) return bad("corrupted model file (checksum mismatch)");

  std::map<std::string, std::string_view, std::less<>> sections;
  for (size_t pos = 0; pos < payload.size();) {
    uint32_t len;
    uint64_t size;
    if (payload.size() - pos < 4) return bad("bad section header");
    std::memcpy(&len, payload.data() + pos, 4);
    pos += 4;
    if (payload.size() - pos < uint64_t(len) + 8) return bad("bad section name");
    std::string name(payload.substr(pos, len));
    pos += len;
    std::memcpy(&size, payload.data() + pos, 8);
    pos += 8;
    if (payload.size() - pos < size) return bad("section '" + name + "' runs past the end");
    sections[name] = payload.substr(pos, size);
    pos += size;
  }
  auto section = [&](const std::string& name, std::string_view* out) -> Status {
    auto it = sections.find(name);
    if (it == sections.end()) return bad("missing section '" + name + "'");
    *out = it->second;
    return Status::Ok();
  };

  std::string_view s;
  FIELDFM_RETURN_IF_ERROR(section("meta", &s));
  nlohmann::json meta = nlohmann::json::parse(s, nullptr, /*allow_exceptions=*/false);
  if (meta.is_discarded() || !meta.is_object()) return bad("meta section is not JSON");
  int state_floats = 0, slot_state_floats = 0;
  uint64_t step = 0;
  try {
    auto spec = ModelSpec::FromJson(meta.at("spec"));
    if (!spec.ok()) return spec.status().WithContext(path);
    m->spec = *spec;
    m->training = meta.at("training");
    m->min_count = meta.at("min_count").get<uint32_t>();
    auto unseen = ParseUnseenMode(meta.at("unseen").get<std::string>());
    if (!unseen.ok()) return bad(unseen.status().message());
    m->unseen = *unseen;
    m->use_weights = meta.at("use_weights").get<bool>();
    state_floats = meta.at("state").get<int>();
    slot_state_floats = meta.value("slot_state", 0);  // absent in files from before row-wise AdaGrad
    step = meta.at("step").get<uint64_t>();
  } catch (const nlohmann::json::exception& e) {
    return bad(std::string("bad meta section: ") + e.what());
  }
  if (state_floats < 0 || state_floats > 2) return bad("bad optimizer state count");
  if (slot_state_floats < 0 || slot_state_floats > 1 || (slot_state_floats > 0 && state_floats > 0))
    return bad("bad per-slot optimizer state count");
  FIELDFM_RETURN_IF_ERROR(section("pipeline", &s));
  m->pipeline_json = std::string(s);
  const uint64_t N = m->spec.num_indices;
  const uint32_t F = m->spec.num_fields;
  FIELDFM_RETURN_IF_ERROR(section("counts", &s));
  FIELDFM_RETURN_IF_ERROR(Decode("counts", s, &m->counts, N));
  FIELDFM_RETURN_IF_ERROR(section("field_of", &s));
  FIELDFM_RETURN_IF_ERROR(Decode("field_of", s, &m->field_of, N));

  // The parameter list comes from the spec's graph; sizes are checked against it.
  m->pool->Clear();
  m->store = ParamStore{};
  m->store.state = state_floats;
  m->store.slot_state = slot_state_floats;
  m->store.step = step;
  m->store.num_fields = F;
  m->store.num_indices = N;
  for (const auto& [name, data] : sections) {
    if (name.rfind("sparse/", 0) == 0) {
      const std::string pname = name.substr(7);
      SparseTable& t = m->store.sparse[pname];
      t.rows = N;
      t.k = pname == "linear" ? 1 : m->spec.k;
      t.slots = pname == "field_aware_embedding" ? F : 1;
      t.state = uint32_t(state_floats);
      t.slot_state = uint32_t(slot_state_floats);
      const uint64_t expected = t.rows * t.row_stride();
      const bool in_place = map_in_place && kind == kKindModel && state_floats == 0 && slot_state_floats == 0 &&
                            data.size() == expected * sizeof(float) &&
                            reinterpret_cast<uintptr_t>(data.data()) % kSparseAlign == 0;
      if (in_place) {
        t.mapped = reinterpret_cast<float*>(const_cast<char*>(data.data()));
        t.mapping = mapping;
      } else {  // checkpoints (trained further), files written before the alignment padding
        FIELDFM_RETURN_IF_ERROR(Decode(name, data, &t.data, expected));
      }
      std::string_view u;
      FIELDFM_RETURN_IF_ERROR(section("unseen/" + pname, &u));
      if (!u.empty()) FIELDFM_RETURN_IF_ERROR(Decode("unseen/" + pname, u, &t.unseen, uint64_t(F) * t.slots * t.k));
    } else if (name.rfind("dense/", 0) == 0) {
      const std::string pname = name.substr(6);
      DenseParam& p = m->store.dense[pname];
      if (data.size() % sizeof(float)) return bad("section '" + name + "' is not a float array");
      FIELDFM_RETURN_IF_ERROR(Decode(name, data, &p.w, data.size() / sizeof(float)));
      if (kind == kKindCheckpoint) {
        std::string_view s1, s2;
        FIELDFM_RETURN_IF_ERROR(section("dense_s1/" + pname, &s1));
        FIELDFM_RETURN_IF_ERROR(section("dense_s2/" + pname, &s2));
        FIELDFM_RETURN_IF_ERROR(Decode("dense_s1", s1, &p.s1, s1.size() / sizeof(float)));
        FIELDFM_RETURN_IF_ERROR(Decode("dense_s2", s2, &p.s2, s2.size() / sizeof(float)));
      }
    }
  }
  m->checksum = digest;
  if (state) {
    FIELDFM_RETURN_IF_ERROR(section("train_state", &s));
    nlohmann::json ts = nlohmann::json::parse(s, nullptr, false);
    if (ts.is_discarded()) return bad("train_state is not JSON");
    try {
      state->epochs_done = ts.at("epochs_done").get<int>();
      state->best_epoch = ts.at("best_epoch").get<int>();
      state->best_score = ts.at("best_score").get<double>();
      state->bad_epochs = ts.at("bad_epochs").get<int>();
      state->history.clear();
      for (const auto& r : ts.at("history")) state->history.push_back(ReportFromJson(r));
    } catch (const nlohmann::json::exception& e) {
      return bad(std::string("bad train_state: ") + e.what());
    }
    std::vector<SnapshotTable> best_tables;
    std::vector<std::string_view> best_data;
    for (const auto& [name, data] : sections) {
      if (name.rfind("best_sparse/", 0) == 0) {
        if (data.size() % sizeof(float)) return bad("section '" + name + "' is not a float array");
        best_tables.push_back({name.substr(12), data.size() / sizeof(float)});
        best_data.push_back(data);
      } else if (name.rfind("best_dense/", 0) == 0) {
        std::vector<float> v(data.size() / sizeof(float));
        if (!v.empty()) std::memcpy(v.data(), data.data(), v.size() * sizeof(float));
        state->best_dense[name.substr(11)] = std::move(v);
      }
    }
    state->best_sparse_tag = 0;
    if (!best_tables.empty()) {
      if (state->best_sparse_path.empty())
        return Status::Internal(path + ": the checkpoint has best-epoch weights but no snapshot path was given");
      SnapshotWriter sw;
      FIELDFM_RETURN_IF_ERROR(sw.Open(state->best_sparse_path, state->best_epoch, best_tables));
      for (std::string_view d : best_data) FIELDFM_RETURN_IF_ERROR(sw.Append(d.data(), d.size()));
      FIELDFM_ASSIGN_OR_RETURN(state->best_sparse_tag, sw.Commit());
    }
  }
  return Status::Ok();
}

}  // namespace fieldfm
