// Everything a trained model does after training: unseen vectors, save/load,
// batched prediction, metadata and export.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "fieldfm/cache.h"
#include "model/network.h"
#include "train/model_data.h"
#include "util/atomic_file.h"
#include "util/parallel.h"

namespace fieldfm {

void ComputeUnseen(Model* m) {
  ParamStore& st = m->store;
  const uint32_t F = st.num_fields;
  const uint32_t min_count = std::max<uint32_t>(1, m->min_count);
  st.known.assign(st.num_indices, 0);
  for (uint64_t j = 0; j < st.num_indices && j < m->counts.size(); ++j) st.known[j] = m->counts[j] >= min_count;
  for (auto& [name, t] : st.sparse) {
    if (name == "linear") continue;  // unseen values weigh 0: no unseen row
    const uint32_t width = t.slots * t.k, ss = t.slot_stride();
    std::vector<double> sum(size_t(F) * width, 0.0);
    std::vector<uint64_t> n(F, 0);
    if (m->unseen == UnseenMode::kMean) {
      for (uint64_t j = 0; j < t.rows; ++j) {
        if (!st.known[j] || m->field_of[j] >= F) continue;
        const uint32_t f = m->field_of[j];
        const float* row = t.row(j);
        for (uint32_t s = 0; s < t.slots; ++s)
          for (uint32_t d = 0; d < t.k; ++d) sum[size_t(f) * width + s * t.k + d] += row[s * ss + d];
        ++n[f];
      }
    }
    t.unseen.assign(size_t(F) * width, 0.0f);
    for (uint32_t f = 0; f < F; ++f)
      if (n[f])
        for (uint32_t d = 0; d < width; ++d) t.unseen[size_t(f) * width + d] = float(sum[size_t(f) * width + d] / n[f]);
  }
}

Status SaveModel(const Model& model, const std::string& path) { return WriteModelFile(path, model, nullptr); }

Result<std::shared_ptr<Model>> LoadModel(const std::string& path, bool map_in_place) {
  auto m = std::make_shared<Model>();
  FIELDFM_RETURN_IF_ERROR(ReadModelFile(path, m.get(), nullptr, map_in_place));
  // The graph must find exactly the parameters the file has, with their shapes.
  const size_t sparse = m->store.sparse.size(), dense = m->store.dense.size();
  auto net = Network::Build(m->spec, &m->store, m->use_weights);
  if (!net.ok()) return net.status().WithContext(path);
  if (m->store.sparse.size() != sparse || m->store.dense.size() != dense)
    return Status::Corruption(path + ": the file lacks parameters its model type needs");
  m->store.known.assign(m->spec.num_indices, 0);
  const uint32_t min_count = std::max<uint32_t>(1, m->min_count);
  for (uint64_t j = 0; j < m->spec.num_indices; ++j) m->store.known[j] = m->counts[j] >= min_count;
  for (auto& [name, t] : m->store.sparse)
    if (name != "linear" && t.unseen.size() != size_t(m->spec.num_fields) * t.slots * t.k)
      return Status::Corruption(path + ": missing unseen vectors for " + name);
  // One random read per feature fewer (lr predict 18% faster, session 29);
  // a model it cannot fold is scored with the flags, as before.
  if ((m->spec.type == ModelType::kLr || m->spec.type == ModelType::kFm) && !m->spec.mean_pooling)
    FoldKnownIntoLinear(&m->store);
  m->pool->Release(std::move(*net));
  return m;
}

// ---- prediction -------------------------------------------------------------

namespace {
constexpr size_t kPredictChunk = 256;  // bounds activation memory of deep field-aware models
}

std::unique_ptr<Network> NetworkPool::Acquire(const Model& m) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!free_.empty()) {
      auto n = std::move(free_.back());
      free_.pop_back();
      return n;
    }
  }
  // Every parameter exists, so Build only reads the store.
  auto net = Network::Build(m.spec, const_cast<ParamStore*>(&m.store), m.use_weights);
  return net.ok() ? std::move(*net) : nullptr;
}

void NetworkPool::Release(std::unique_ptr<Network> n) {
  std::lock_guard<std::mutex> lock(mu_);
  free_.push_back(std::move(n));
}

void NetworkPool::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  free_.clear();
}

void PredictBatch(const Model& model, const BatchView& batch, std::span<float> out) {
  auto& pool = *model.pool;
  std::unique_ptr<Network> net = pool.Acquire(model);
  if (!net) {
    std::fill(out.begin(), out.end(), 0.0f);
    return;
  }
  for (size_t begin = 0; begin < batch.rows; begin += kPredictChunk) {
    const size_t end = std::min(batch.rows, begin + kPredictChunk);
    net->Predict(model.store, batch.slice(begin, end), out.subspan(begin, end - begin));
  }
  pool.Release(std::move(net));
}

namespace {

// The rows of `all` split over `threads` (this one included).
void PredictParallel(const Model& model, const BatchView& all, int threads, std::span<float> out) {
  ParallelParts(all.rows, threads, [&](int, size_t b, size_t e) {
    PredictBatch(model, all.slice(b, e), out.subspan(b, e - b));
  });
}

// A binary cache, block-parallel: each worker (this thread and threads - 1
// more) claims the next stored block, reads and verifies it, predicts all its
// rows, waits for its turn and hands them to the sink. Reading, checking and
// predicting then never wait on one another: splitting each block's rows
// over the threads instead put the read, the checksum, the sink and a
// fork/join per block on one thread, and two threads predicted lr only
// 1.4x faster than one (bench/RESULTS.md, session 28). The rows are read in
// place in the block's buffer: copying them out was a tenth of an lr predict.
// The first error in input order is the one returned (a later block's worker
// may fail first); the sink has then seen every block before it.
Status PredictCacheBlocks(const Model& model, const CacheSource& cache, int threads, const PredictionSink& sink) {
  if (cache.shuffled()) return Status::InvalidArgument("predicting a cache reads it in storage order: clear its shuffle");
  const std::vector<uint32_t>& order = cache.block_order();
  std::atomic<size_t> next_claim{0};
  std::mutex mu;
  std::condition_variable turn;
  size_t next_emit = 0;  // guarded by mu, as are the two below
  size_t error_pos = SIZE_MAX;
  Status error;
  const auto fail = [&](size_t pos, Status s) {
    std::lock_guard<std::mutex> lock(mu);
    if (pos < error_pos) error_pos = pos, error = std::move(s);
    turn.notify_all();
  };
  const auto work = [&] {
    std::vector<float> pred;
    for (;;) {
      const size_t pos = next_claim.fetch_add(1, std::memory_order_relaxed);
      if (pos >= order.size()) return;
      {
        std::lock_guard<std::mutex> lock(mu);
        if (pos > error_pos) return;
      }
      const size_t b = order[pos];
      Result<BatchView> v = cache.ReadBlock(b);
      if (!v.ok()) return fail(pos, v.status());
      pred.resize(v->rows);
      PredictBatch(model, *v, pred);
      std::unique_lock<std::mutex> lock(mu);
      turn.wait(lock, [&] { return next_emit == pos || error_pos < pos; });
      if (error_pos < pos) return;
      lock.unlock();
      Status s = sink(std::span<const float>(pred), std::span<const float>(v->labels, v->rows),
                      std::span<const float>(v->weights, v->rows));
      cache.ReleaseBlock(b);
      if (!s.ok()) return fail(pos, std::move(s));
      lock.lock();
      ++next_emit;
      turn.notify_all();
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads && size_t(t) < order.size(); ++t) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();
  return error_pos == SIZE_MAX ? Status::Ok() : error;
}

}  // namespace

Status PredictSource(const Model& model, ExampleSource& source, int threads, const PredictionSink& sink) {
  FIELDFM_RETURN_IF_ERROR(source.Rewind());
  threads = std::max(1, threads);
  if (auto* cache = dynamic_cast<CacheSource*>(&source)) return PredictCacheBlocks(model, *cache, threads, sink);
  constexpr size_t kBlockRows = 1 << 15;
  std::vector<float> pred;
  ExampleBlock block;
  while (true) {
    FIELDFM_ASSIGN_OR_RETURN(size_t n, source.Next(&block, kBlockRows));
    if (n == 0) break;
    pred.resize(n);
    if (block.weights.size() < n) block.weights.resize(n, 1.0f);
    PredictParallel(model, block.view(), threads, pred);
    FIELDFM_RETURN_IF_ERROR(sink(std::span<const float>(pred), std::span<const float>(block.labels.data(), n),
                                 std::span<const float>(block.weights.data(), n)));
  }
  return Status::Ok();
}

Status PredictSource(const Model& model, ExampleSource& source, int threads, std::vector<float>* pred,
                     std::vector<float>* labels, std::vector<float>* weights) {
  pred->clear();
  if (labels) labels->clear();
  if (weights) weights->clear();
  return PredictSource(model, source, threads,
                       [&](std::span<const float> p, std::span<const float> l, std::span<const float> w) {
                         pred->insert(pred->end(), p.begin(), p.end());
                         if (labels) labels->insert(labels->end(), l.begin(), l.end());
                         if (weights) weights->insert(weights->end(), w.begin(), w.end());
                         return Status::Ok();
                       });
}

// ---- accessors, metadata, export -------------------------------------------

const ModelSpec& SpecOf(const Model& m) { return m.spec; }
const std::string& PipelineJsonOf(const Model& m) { return m.pipeline_json; }
bool UsesWeights(const Model& m) { return m.use_weights; }

nlohmann::json ModelMetadata(const Model& m) {
  uint64_t sparse_params = 0, dense_params = 0;
  for (const auto& [name, t] : m.store.sparse) sparse_params += t.rows * t.slots * t.k;
  for (const auto& [name, p] : m.store.dense) dense_params += p.w.size();
  uint64_t known = 0;
  for (uint8_t k : m.store.known) known += k;
  return nlohmann::json{{"model", Name(m.spec.type)},
                        {"spec", m.spec.ToJson()},
                        {"fields", m.spec.num_fields},
                        {"indices", m.spec.num_indices},
                        {"known_indices", known},
                        {"k", m.spec.k},
                        {"min_count", m.min_count},
                        {"unseen", Name(m.unseen)},
                        {"use_weights", m.use_weights},
                        {"sparse_parameters", sparse_params},
                        {"dense_parameters", dense_params},
                        {"training", m.training},
                        {"version", fmt::format("{:016x}", m.checksum)}};
}

std::string DescribeGraph(const Model& m) {
  auto net = m.pool->Acquire(m);
  if (!net) return "";
  std::string d = net->Describe();
  m.pool->Release(std::move(net));
  return d;
}

Status ExportLatentTsv(const Model& m, const std::string& path) {
  AtomicFile f;
  FIELDFM_RETURN_IF_ERROR(f.Open(path));
  std::string line = "table\tfield\tfeature\tcount\ttarget_field";
  for (uint32_t d = 0; d < m.spec.k; ++d) line += fmt::format("\tv{}", d);
  line += '\n';
  FIELDFM_RETURN_IF_ERROR(f.Write(line));
  for (const auto& [name, t] : m.store.sparse) {
    if (name == "linear") continue;
    const bool field_aware = t.slots > 1 || name == "field_aware_embedding";
    auto emit = [&](const std::string& field, const std::string& feature, uint64_t count, const float* row,
                    uint32_t slot_stride) -> Status {
      for (uint32_t s = 0; s < t.slots; ++s) {
        line = fmt::format("{}\t{}\t{}\t{}\t{}", name, field, feature, count, field_aware ? int64_t(s) : -1);
        for (uint32_t d = 0; d < t.k; ++d) line += fmt::format("\t{:.7g}", row[s * slot_stride + d]);
        line += '\n';
        FIELDFM_RETURN_IF_ERROR(f.Write(line));
      }
      return Status::Ok();
    };
    for (uint64_t j = 0; j < t.rows; ++j) {
      if (m.counts[j] == 0) continue;  // never seen: its vector is its initialisation
      FIELDFM_RETURN_IF_ERROR(emit(std::to_string(m.field_of[j]), std::to_string(j), m.counts[j], t.row(j),
                                   t.slot_stride()));
    }
    for (uint32_t fld = 0; !t.unseen.empty() && fld < m.spec.num_fields; ++fld)
      FIELDFM_RETURN_IF_ERROR(emit(std::to_string(fld), "unseen", 0, t.unseen_row(fld), t.k));
  }
  return f.Commit();
}

}  // namespace fieldfm
