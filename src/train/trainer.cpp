// The trainer: a counting pass, then epochs of hogwild mini-batch training.
//
// Threads: each thread owns a Network (activations and gradient buffers) over
// the shared ParamStore; after each of its mini-batches it applies its own
// gradients without locks (hogwild on sparse rows AND dense layers: dense
// gradients are per thread, summed over the thread's batch, then applied).
// Randomness (shuffling, dropout) is a pure function of (seed, epoch, block,
// position), so one thread + one seed gives identical bytes every run, and a
// resumed run equals an uninterrupted one.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <numeric>
#include <thread>

#include <unistd.h>

#include <fmt/format.h>

#include "fieldfm/cache.h"
#include "fieldfm/train.h"
#include "model/network.h"
#include "train/best_snapshot.h"
#include "train/metrics.h"
#include "train/model_data.h"

#include "util/mix.h"
#include "util/prefetch.h"

namespace fieldfm {

namespace {


float DefaultLearningRate(OptimizerType t) {
  switch (t) {
    case OptimizerType::kSgd: return 0.1f;
    case OptimizerType::kAdaGrad:
    case OptimizerType::kRowAdaGrad: return 0.2f;  // libffm's default
    case OptimizerType::kAdam: return 0.001f;
    case OptimizerType::kFtrl: return 0.1f;
  }
  return 0.1f;
}

// Deep models default to 0.1, not libffm's 0.2: at 0.2 DeepFM on the 39-field
// Criteo sample diverged with 2 hogwild threads (first-epoch training logloss
// 9-12), at 0.1 it did not (docs/models.md has the measurements).
float ResolvedLr(const TrainOptions& o) {
  if (!std::isnan(o.lr)) return o.lr;
  if ((o.optimizer == OptimizerType::kAdaGrad || o.optimizer == OptimizerType::kRowAdaGrad) && o.model.is_deep())
    return 0.1f;
  return DefaultLearningRate(o.optimizer);
}

OptimizerType ResolvedDenseOptimizer(const TrainOptions& o) {
  const OptimizerType t = o.dense_optimizer.value_or(o.model.is_deep() ? OptimizerType::kAdam : o.optimizer);
  // Dense params have no rows: row-wise AdaGrad is AdaGrad there.
  return t == OptimizerType::kRowAdaGrad ? OptimizerType::kAdaGrad : t;
}

float ResolvedDenseLr(const TrainOptions& o) {
  if (!std::isnan(o.dense_lr)) return o.dense_lr;
  const OptimizerType t = ResolvedDenseOptimizer(o);
  const bool same = t == o.optimizer || (t == OptimizerType::kAdaGrad && o.optimizer == OptimizerType::kRowAdaGrad);
  return same ? ResolvedLr(o) : DefaultLearningRate(t);
}

bool IsClassification(LossType l) { return l == LossType::kLogloss; }

double MeanLoss(LossType l, double loss_sum, double weight_sum) {
  if (weight_sum <= 0) return 0;
  const double mean = loss_sum / weight_sum;
  return IsClassification(l) ? mean : std::sqrt(2 * mean);  // ½ e² -> RMSE
}

// Rows a training thread claims at a time from its block.
constexpr size_t kChunkRows = 1024;

// One block's rows, where they are stored: a block copied from the source, or
// (binary cache) views of its mapped blocks, so training reads the rows in
// place. A third of an LR epoch went to copying 64k-row blocks out of the
// cache and reading the copy back (bench/RESULTS.md, session 5).
struct RowSet {
  std::vector<float> labels, weights;
  std::vector<std::span<const Feature>> rows;
  size_t size() const { return rows.size(); }
  void clear() {
    labels.clear();
    weights.clear();
    rows.clear();
  }
  void Add(const BatchView& v) {
    for (size_t r = 0; r < v.rows; ++r) {
      labels.push_back(v.labels[r]);
      weights.push_back(v.weights ? v.weights[r] : 1.0f);
      rows.push_back(v.row(r));
    }
  }
  // Rows in `order` (a permutation of [0, size)). Training then walks the set
  // in sequence; gathering it here in one tight loop keeps many of the random
  // reads in flight, where the training loop would wait on each in turn.
  void Permute(std::span<const uint32_t> order, RowSet* scratch) {
    scratch->clear();
    for (const uint32_t r : order) {
      scratch->labels.push_back(labels[r]);
      scratch->weights.push_back(weights[r]);
      scratch->rows.push_back(rows[r]);
    }
    std::swap(*this, *scratch);
  }
};

// The next block_rows rows of `src` into *set: views when src is a binary
// cache, else a copy into *block.
Result<size_t> NextRows(ExampleSource& src, size_t block_rows, ExampleBlock* block, std::vector<BatchView>* segments,
                        RowSet* set) {
  set->clear();
  if (auto* cache = dynamic_cast<CacheSource*>(&src)) {
    FIELDFM_ASSIGN_OR_RETURN(size_t n, cache->NextViews(segments, block_rows));
    for (const BatchView& v : *segments) set->Add(v);
    return n;
  }
  FIELDFM_ASSIGN_OR_RETURN(size_t n, src.Next(block, block_rows));
  BatchView v = block->view();
  if (block->weights.size() < block->rows()) v.weights = nullptr;
  set->Add(v);
  return n;
}

// Cache-line aligned: each thread writes its accumulators every row.
struct alignas(64) Worker {
  double loss = 0, weight = 0;
  std::unique_ptr<Network> net;
  ExampleBlock batch;
};

class Trainer {
 public:
  Trainer(const TrainOptions& o, ExampleSource& train, ExampleSource* valid, const TrainCallbacks& cb)
      : o_(o), train_(train), valid_(valid), cb_(cb) {}
  ~Trainer() { DropSnapshot(); }  // also when training failed: it is only this run's

  Result<std::shared_ptr<Model>> Run(const std::string& pipeline_json, TrainSummary* summary);

 private:
  Status CountValues();
  void UseHotRows();
  Status Setup(const std::string& pipeline_json);
  Status Epoch(int epoch, EpochReport* report);
  void TrainRows(Worker& w, const RowSet& block, std::span<const uint32_t> order, uint64_t seed,
                 uint64_t step_base, std::atomic<size_t>* cursor);
  Status Validate(EpochReport* report, double* score);
  std::string SnapshotPath() const;
  Status SnapshotBest();
  void DropSnapshot();
  Status RestoreBest();

  TrainOptions o_;
  ExampleSource& train_;
  ExampleSource* valid_;
  const TrainCallbacks& cb_;
  std::shared_ptr<Model> model_ = std::make_shared<Model>();
  OptimizerConfig opt_;
  std::vector<Worker> workers_;
  TrainState state_;
  uint64_t rows_total_ = 0;
  std::atomic<uint64_t> step_{0};
  // Deep models with several threads: one dense update at a time (one lock per
  // 256-row batch). Racing Adam updates can lose a moment write (m keeps a
  // thread's gradient, v does not), leaving m/sqrt(v) unbounded on weights
  // every row touches. Sparse rows, rarely shared, stay lock-free (hogwild).
  std::mutex dense_mu_;
  // Merges of per-thread hot rows into the shared tables, one at a time.
  std::mutex hot_mu_;
  // lr, fm with hot rows: installed for each epoch's training, restored before
  // anything else reads the table (also when the epoch fails).
  std::unique_ptr<RedirectedRows> redirect_;
};

Status Trainer::CountValues() {
  FIELDFM_RETURN_IF_ERROR(train_.Rewind());
  // The first pass over a cache verifies its blocks: on all the threads.
  if (auto* cache = dynamic_cast<CacheSource*>(&train_)) cache->set_verify_threads(o_.threads);
  ExampleBlock b;
  std::vector<BatchView> segments;
  RowSet set;
  uint32_t fields = 0;
  auto& counts = model_->counts;
  auto& field_of = model_->field_of;
  uint64_t indices = 0;
  while (true) {
    FIELDFM_ASSIGN_OR_RETURN(size_t n, NextRows(train_, o_.block_rows, &b, &segments, &set));
    if (n == 0) break;
    rows_total_ += n;
    for (const auto& row : set.rows)
      for (const Feature& f : row) {
        if (f.index >= counts.size()) {
          const size_t size = std::max<size_t>(size_t(f.index) + 1, counts.size() * 2);
          counts.resize(size, 0);
          field_of.resize(size, 0);
        }
        if (counts[f.index]++ == 0) field_of[f.index] = f.field;
        fields = std::max(fields, f.field + 1);
        indices = std::max<uint64_t>(indices, uint64_t(f.index) + 1);
      }
  }
  if (rows_total_ == 0) return Status::DataError("no training examples");
  if (o_.model.has_embeddings() && fields == 0) return Status::DataError("training examples have no features");
  counts.resize(indices);
  field_of.resize(indices);
  model_->spec.num_fields = fields;
  model_->spec.num_indices = uint32_t(indices);
  return Status::Ok();
}

Status Trainer::Setup(const std::string& pipeline_json) {
  opt_.type = o_.optimizer;
  opt_.lr = ResolvedLr(o_);
  opt_.dense_type = ResolvedDenseOptimizer(o_);
  opt_.dense_lr = ResolvedDenseLr(o_);
  opt_.lambda_embedding = o_.lambda;
  opt_.lambda_dense = o_.lambda_dense;
  if (o_.batch_size == 0) o_.batch_size = o_.model.is_deep() ? 256 : 1;
  if ((o_.optimizer == OptimizerType::kFtrl || opt_.dense_type == OptimizerType::kFtrl) && o_.model.is_deep())
    return Status::InvalidArgument("ftrl is for lr, fm and ffm; use adagrad or adam for deep models");
  if (o_.epochs < 0 || o_.threads < 1 || o_.patience < 1 || o_.block_rows == 0)
    return Status::InvalidArgument("epochs >= 0, threads >= 1, patience >= 1 required");
  if (o_.model.dropout < 0 || o_.model.dropout >= 1) return Status::InvalidArgument("dropout must be in [0, 1)");
  Model& m = *model_;
  bool fresh = o_.resume_path.empty();
  // Set before reading a checkpoint: its best-epoch weights go there.
  state_.best_sparse_path = SnapshotPath();
  if (fresh) {
    m.spec = o_.model;
    FIELDFM_RETURN_IF_ERROR(CountValues());
    m.store.state = StateCount(o_.optimizer);
    m.store.slot_state = SlotStateCount(o_.optimizer);
  } else {
    FIELDFM_RETURN_IF_ERROR(ReadModelFile(o_.resume_path, &m, &state_).WithContext("resume"));
    if (m.store.state != StateCount(o_.optimizer) || m.store.slot_state != SlotStateCount(o_.optimizer))
      return Status::InvalidArgument("resume: the checkpoint was written with another optimizer");
    const ModelSpec& want = o_.model;
    if (m.spec.type != want.type || m.spec.k != want.k || m.spec.hidden != want.hidden)
      return Status::InvalidArgument("resume: the checkpoint's model differs from the options");
    step_ = m.store.step;
    rows_total_ = m.training.value("rows", uint64_t(0));
  }
  if (auto* cache = dynamic_cast<CacheSource*>(&train_)) {
    // Epoch's double buffer reads a block while the last one's views are in
    // use, on its own thread while the others train (one more verifying
    // thread would only take a core from them).
    cache->set_views_kept(2);
    cache->set_verify_threads(1);
  }
  m.pipeline_json = pipeline_json;
  m.min_count = o_.min_count;
  m.unseen = o_.unseen;
  m.use_weights = o_.use_weights;
  workers_.resize(o_.threads);
  for (auto& w : workers_) {
    FIELDFM_ASSIGN_OR_RETURN(w.net, Network::Build(m.spec, &m.store, o_.use_weights, o_.seed));
    if (m.spec.is_deep() && workers_.size() > 1) w.net->set_dense_mutex(&dense_mu_);
  }
  if (fresh) {
    for (auto& [name, t] : m.store.sparse) InitState(opt_, &t);
    for (auto& [name, p] : m.store.dense) InitState(opt_, &p);
  } else {
    // After Build: it marks which dense params are trainable (batch-norm statistics are not).
    const size_t dense_state = size_t(StateCount(opt_.dense_type));
    for (const auto& [name, p] : m.store.dense)
      if (p.trainable && p.s1.size() + p.s2.size() != dense_state * p.w.size())
        return Status::InvalidArgument("resume: the checkpoint was written with another dense optimizer");
  }
  UseHotRows();  // after InitState: the copies take the tables' shapes and state
  return Status::Ok();
}

// Hot rows in per-thread copies (model/hot_rows.h): only with several
// threads (one thread writes no line another needs), only where the one-row
// kernels train (their SGD/AdaGrad state is a sum over steps, so adding each
// thread's change is sound), at most kHotBytes of copies per thread.
void Trainer::UseHotRows() {
  // The copies stay in a core's L2. Larger (4 and 8 MiB at shares 1/512 and
  // 1/1024) was slower on the synthetic FFM set: bench/RESULTS.md, session 14.
  constexpr uint64_t kHotBytes = uint64_t(1) << 20;
  const bool additive = opt_.type == OptimizerType::kAdaGrad || opt_.type == OptimizerType::kSgd ||
                        opt_.type == OptimizerType::kRowAdaGrad;
  const bool same_dense = opt_.dense_type == opt_.type ||
                          (opt_.type == OptimizerType::kRowAdaGrad && opt_.dense_type == OptimizerType::kAdaGrad);
  if (workers_.size() < 2 || o_.hot_share <= 0 || model_->spec.is_deep() || !additive || !same_dense ||
      opt_.dense_lr != opt_.lr || o_.batch_size != 1)
    return;
  uint64_t row_bytes = 0;
  for (const auto& [name, t] : model_->store.sparse) row_bytes += t.row_stride() * sizeof(float);
  if (row_bytes == 0) return;
  const uint64_t min_count = std::max<uint64_t>(1, uint64_t(std::ceil(o_.hot_share * double(rows_total_))));
  // lr also copies its warm rows, those a block has about twice or more
  // (a thread's copy is then written more than once before its merge at the
  // block's end), up to 4 MiB: two lr threads' epochs 0.66 s against 0.81 s
  // (medians of 9), test logloss the same to five digits. fm's embeddings
  // merged that late lost training loss and speed (bench/RESULTS.md, session
  // 21), so fm and ffm merge all their copies every chunk.
  constexpr uint64_t kWarmBytes = uint64_t(4) << 20;
  const bool warm = !model_->spec.has_embeddings();
  const uint64_t warm_min =
      std::max<uint64_t>(2, uint64_t(std::ceil(2.0 * double(rows_total_) / double(o_.block_rows))));
  auto hot = HotIndex::Build(model_->counts, min_count, kHotBytes / row_bytes, warm_min,
                             warm ? kWarmBytes / row_bytes : 0);
  if (hot->size() == 0) return;
  for (auto& w : workers_) w.net->UseHotRows(hot);
  // lr and fm: the kernel finds the copies through redirects in the linear
  // table's rows. Network::RedirectHotRows says where (not ffm, whose kernel
  // looks them up); the workers' graphs are alike, so all or none take them.
  redirect_ = std::make_unique<RedirectedRows>(&model_->store.sparse.at("linear"), hot);
  for (auto& w : workers_)
    if (!w.net->RedirectHotRows(redirect_.get())) {
      for (auto& v : workers_) v.net->RedirectHotRows(nullptr);
      redirect_.reset();
      break;
    }
}

// Starts loading a row's features (a random place in a block).
inline void PrefetchLines(std::span<const Feature> row) {
  const uintptr_t end = reinterpret_cast<uintptr_t>(row.data() + row.size());
  for (uintptr_t p = reinterpret_cast<uintptr_t>(row.data()) & ~uintptr_t(63); p < end; p += 64)
    PrefetchL1(reinterpret_cast<const void*>(p));
}

void Trainer::TrainRows(Worker& w, const RowSet& block, std::span<const uint32_t> order, uint64_t seed,
                        uint64_t step_base, std::atomic<size_t>* cursor) {
  const size_t bs = o_.batch_size;
  const size_t chunk = (kChunkRows + bs - 1) / bs * bs;  // whole batches
  // One-row steps read the row in place (no copy into the worker's batch).
  const bool in_place = bs == 1;
  uint64_t one_row_offsets[2] = {0, 0};
  w.net->PullHotRows(hot_mu_);
  for (;;) {
    const size_t c0 = cursor->fetch_add(chunk, std::memory_order_relaxed);
    if (c0 >= order.size()) break;
    const size_t c1 = std::min(order.size(), c0 + chunk);
    for (size_t s = c0; s < c1; s += bs) {
      const size_t e = std::min(c1, s + bs);
      BatchView v;
      if (in_place) {
        const uint32_t r = order[s];
        one_row_offsets[1] = block.rows[r].size();
        v = BatchView{block.labels.data() + r, block.weights.data() + r, one_row_offsets, block.rows[r].data(), 1};
      } else {
        w.batch.clear();
        for (size_t i = s; i < e; ++i) {
          // Each row's features sit at a random place in the block: start the
          // one kAhead rows on while this one is copied (the copy's loads
          // were 9% of an NFM epoch).
          constexpr size_t kAhead = 8;
          if (i + kAhead < e) PrefetchLines(block.rows[order[i + kAhead]]);
          const uint32_t r = order[i];
          w.batch.add(block.labels[r], block.weights[r], block.rows[r]);
        }
        v = w.batch.view();
      }
      if (in_place && s + 2 < c1) PrefetchLines(block.rows[order[s + 2]]);  // the row after next's features
      const RunContext ctx{true, Mix64(seed + s)};
      const std::span<const Feature> next = e < c1 ? block.rows[order[e]] : std::span<const Feature>();
      w.net->TrainStep(v, ctx, opt_, step_base + s / bs + 1, next);
      w.loss += w.net->step_loss_sum();
      w.weight += w.net->step_weight_sum();
    }
    // The frequent rows once per chunk (merging every 4 chunks was no
    // faster: bench/RESULTS.md, session 14), the warm ones when the thread's
    // share of the block ends, so the tables are whole when the block ends.
    w.net->MergeHotRows(hot_mu_, false);
  }
  w.net->MergeHotRows(hot_mu_, true);
}

Status Trainer::Epoch(int epoch, EpochReport* report) {
  const auto start = std::chrono::steady_clock::now();
  const double decay = std::pow(o_.lr_decay, epoch);
  opt_.lr = float(ResolvedLr(o_) * decay);
  opt_.dense_lr = float(ResolvedDenseLr(o_) * decay);
  FIELDFM_RETURN_IF_ERROR(train_.Rewind());
  for (auto& w : workers_) w.loss = w.weight = 0;
  struct RestoreOnExit {
    RedirectedRows* r;
    ~RestoreOnExit() {
      if (r) r->Restore();
    }
  } restore{redirect_.get()};
  if (redirect_) redirect_->Install();
  // Double-buffered: while the other workers train on one block, this thread
  // reads and shuffles the next, then joins them (it claims chunks from the
  // same cursor, so nothing waits for it). Read, shuffle and a fork/join in
  // series between blocks held two lr threads' epoch at 1.4x one thread's
  // (bench/RESULTS.md, session 28). With one thread the same work runs in the
  // same order: bytes do not change. Alone, this thread trains first.
  struct Prepared {
    ExampleBlock copied;
    std::vector<BatchView> segments;
    RowSet rows, scratch;
    std::vector<uint32_t> order;
    uint64_t seed = 0;
  };
  const auto prepare = [&](Prepared* p, uint64_t block_no) -> Status {
    FIELDFM_ASSIGN_OR_RETURN(size_t n, NextRows(train_, o_.block_rows, &p->copied, &p->segments, &p->rows));
    p->order.resize(n);
    std::iota(p->order.begin(), p->order.end(), 0u);
    p->seed = Mix64(Mix64(o_.seed ^ Mix64(uint64_t(epoch))) + block_no);
    if (o_.shuffle && n > 1) {
      for (size_t i = n - 1; i > 0; --i) std::swap(p->order[i], p->order[Mix64(p->seed + i) % (i + 1)]);
      p->rows.Permute(p->order, &p->scratch);
      std::iota(p->order.begin(), p->order.end(), 0u);
    }
    return Status::Ok();
  };
  Prepared cur, next;
  uint64_t rows = 0;
  FIELDFM_RETURN_IF_ERROR(prepare(&cur, 0));
  for (uint64_t block_no = 0; cur.rows.size() > 0; ++block_no) {
    const size_t n = cur.rows.size();
    // Threads claim chunks of the block from one cursor, so a thread slowed
    // by other load does not hold the rest at the block's end. A batch's seed
    // and optimizer step follow from its position in the block alone (no
    // shared counter written per row).
    const size_t T = std::min(workers_.size(), (n + kChunkRows - 1) / kChunkRows);
    const uint64_t step_base = step_;
    std::atomic<size_t> cursor{0};
    std::vector<std::thread> threads;
    for (size_t t = 1; t < T; ++t)
      threads.emplace_back(
          [&, t] { TrainRows(workers_[t], cur.rows, cur.order, Mix64(cur.seed), step_base, &cursor); });
    // Alone, train first: the block just read is still in cache (reading the
    // next one first made a one-thread fm epoch 5% slower).
    Status read;
    if (T > 1) read = prepare(&next, block_no + 1);
    TrainRows(workers_[0], cur.rows, cur.order, Mix64(cur.seed), step_base, &cursor);
    if (T <= 1) read = prepare(&next, block_no + 1);
    for (auto& th : threads) th.join();
    FIELDFM_RETURN_IF_ERROR(read);
    step_ = step_base + (n + o_.batch_size - 1) / o_.batch_size;
    rows += n;
    if (cb_.on_progress) {
      double loss = 0, weight = 0;
      for (auto& w : workers_) loss += w.loss, weight += w.weight;
      cb_.on_progress(Progress{epoch + 1, rows, rows_total_, MeanLoss(o_.model.loss, loss, weight),
                               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()});
    }
    std::swap(cur, next);
  }
  double loss = 0, weight = 0;
  for (auto& w : workers_) loss += w.loss, weight += w.weight;
  report->epoch = epoch + 1;
  report->rows = rows;
  report->train_loss = MeanLoss(o_.model.loss, loss, weight);
  report->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return Status::Ok();
}

Status Trainer::Validate(EpochReport* r, double* score) {
  ComputeUnseen(model_.get());
  std::vector<float> pred, labels, weights;
  FIELDFM_RETURN_IF_ERROR(PredictSource(*model_, *valid_, o_.threads, &pred, &labels, &weights));
  if (pred.empty()) return Status::DataError("validation: no examples");
  const Task task = IsClassification(o_.model.loss) ? Task::kClassification : Task::kRegression;
  const Metrics m = ComputeMetrics(pred, labels, o_.use_weights ? std::span<const float>(weights) : std::span<const float>(), task);
  r->has_validation = true;
  r->va_logloss = m.logloss;
  r->va_auc = m.auc;
  r->va_rmse = m.rmse;
  r->va_weighted_rmse = m.weighted_rmse;
  r->va_ne = m.ne;
  r->va_calibration = m.calibration;
  *score = task == Task::kClassification ? m.logloss : (o_.use_weights ? m.weighted_rmse : m.rmse);
  return Status::Ok();
}

std::string Trainer::SnapshotPath() const {
  if (!o_.best_weights_path.empty()) return o_.best_weights_path;
  if (!o_.checkpoint_path.empty()) return o_.checkpoint_path + ".best";
  static std::atomic<uint64_t> counter{0};
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::temp_directory_path(ec);
  if (ec) dir = "/tmp";
  return (dir / fmt::format("fieldfm-best-{}-{}.bin", ::getpid(), counter++)).string();
}

// The current weights become the best epoch's: sparse tables to the snapshot
// file, dense params (small) in memory.
Status Trainer::SnapshotBest() {
  DropSnapshot();  // the previous best is no longer needed (a checkpoint has its own copy): free its disk first
  FIELDFM_ASSIGN_OR_RETURN(state_.best_sparse_tag,
                           WriteSparseSnapshot(state_.best_sparse_path, state_.best_epoch, model_->store));
  state_.best_dense.clear();
  for (const auto& [name, p] : model_->store.dense) state_.best_dense[name].assign(p.w.begin(), p.w.end());
  return Status::Ok();
}

void Trainer::DropSnapshot() {
  if (state_.best_sparse_tag == 0) return;
  std::remove(state_.best_sparse_path.c_str());
  state_.best_sparse_tag = 0;
}

Status Trainer::RestoreBest() {
  // No snapshot: a checkpoint resumed from a run without --auto-stop (the weights stay the last epoch's).
  if (state_.best_sparse_tag != 0)
    FIELDFM_RETURN_IF_ERROR(RestoreSparseSnapshot(state_.best_sparse_path, state_.best_sparse_tag, &model_->store));
  for (auto& [name, p] : model_->store.dense) {
    auto it = state_.best_dense.find(name);
    if (it != state_.best_dense.end() && it->second.size() == p.w.size()) p.w.assign(it->second.begin(), it->second.end());
  }
  return Status::Ok();
}

Result<std::shared_ptr<Model>> Trainer::Run(const std::string& pipeline_json, TrainSummary* summary) {
  FIELDFM_RETURN_IF_ERROR(Setup(pipeline_json));
  Model& m = *model_;
  bool stopped = false;
  for (int epoch = state_.epochs_done; epoch < o_.epochs && !stopped; ++epoch) {
    EpochReport r;
    FIELDFM_RETURN_IF_ERROR(Epoch(epoch, &r));
    if (valid_) {
      double score = 0;
      FIELDFM_RETURN_IF_ERROR(Validate(&r, &score));
      if (state_.best_epoch == 0 || score < state_.best_score) {
        state_.best_epoch = r.epoch;
        state_.best_score = score;
        state_.bad_epochs = 0;
        r.best = true;
        if (o_.auto_stop) FIELDFM_RETURN_IF_ERROR(SnapshotBest().WithContext("auto-stop"));
      } else if (o_.auto_stop && ++state_.bad_epochs >= o_.patience) {
        stopped = true;
      }
    }
    state_.history.push_back(r);
    state_.epochs_done = epoch + 1;
    m.store.step = step_;
    m.training = nlohmann::json{{"options", o_.ToJson()}, {"rows", rows_total_}};
    if (!o_.checkpoint_path.empty())
      FIELDFM_RETURN_IF_ERROR(WriteModelFile(o_.checkpoint_path, m, &state_).WithContext("checkpoint"));
    if (cb_.on_epoch) cb_.on_epoch(r);
  }
  if (o_.auto_stop && state_.best_epoch > 0 && state_.best_epoch != state_.epochs_done)
    FIELDFM_RETURN_IF_ERROR(RestoreBest().WithContext("auto-stop: restoring the best epoch"));
  DropSnapshot();
  m.store.step = step_;
  m.training = nlohmann::json{{"options", o_.ToJson()},
                              {"rows", rows_total_},
                              {"epochs", state_.epochs_done},
                              {"best_epoch", state_.best_epoch},
                              {"stopped_early", stopped}};
  // The model keeps weights only: drop optimizer state, in place (a copy of
  // the weights would raise peak memory by the size of the parameters).
  for (auto& [name, t] : m.store.sparse) t.DropState();
  for (auto& [name, p] : m.store.dense) {
    p.s1.clear();
    p.s2.clear();
  }
  m.store.state = m.store.slot_state = 0;
  workers_.clear();
  m.pool->Clear();
  ComputeUnseen(&m);
  if (summary) {
    summary->epochs = state_.history;
    summary->best_epoch = state_.best_epoch;
    summary->stopped_early = stopped;
  }
  return model_;
}

}  // namespace

nlohmann::json TrainOptions::ToJson() const {
  // Paths (checkpoint, resume) are not hyperparameters: a resumed run must
  // write the same model bytes as an uninterrupted one.
  return nlohmann::json{{"model", model.ToJson()},
                        {"epochs", epochs},
                        {"lr", ResolvedLr(*this)},
                        {"dense_optimizer", Name(ResolvedDenseOptimizer(*this))},
                        {"dense_lr", ResolvedDenseLr(*this)},
                        {"lambda", lambda},
                        {"lambda_dense", lambda_dense},
                        {"threads", threads},
                        {"auto_stop", auto_stop},
                        {"patience", patience},
                        {"optimizer", Name(optimizer)},
                        {"lr_decay", lr_decay},
                        {"batch_size", batch_size},
                        {"use_weights", use_weights},
                        {"seed", seed},
                        {"min_count", min_count},
                        {"unseen", Name(unseen)},
                        {"shuffle", shuffle},
                        {"hot_share", hot_share}};
}

nlohmann::json ReportToJson(const EpochReport& r) {
  nlohmann::json j{{"epoch", r.epoch}, {"rows", r.rows}, {"train_loss", r.train_loss}, {"seconds", r.seconds}};
  if (r.has_validation) {
    j["va_logloss"] = r.va_logloss;
    j["va_auc"] = r.va_auc;
    j["va_rmse"] = r.va_rmse;
    j["va_weighted_rmse"] = r.va_weighted_rmse;
    j["va_ne"] = r.va_ne;
    j["va_calibration"] = r.va_calibration;
    j["best"] = r.best;
  }
  return j;
}

EpochReport ReportFromJson(const nlohmann::json& j) {
  EpochReport r;
  auto num = [&](const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_number() ? it->get<double>() : std::nan("");
  };
  r.epoch = j.value("epoch", 0);
  r.rows = j.value("rows", uint64_t(0));
  r.train_loss = num("train_loss");
  r.seconds = num("seconds");
  r.has_validation = j.contains("va_logloss");
  if (r.has_validation) {
    r.va_logloss = num("va_logloss");
    r.va_auc = num("va_auc");
    r.va_rmse = num("va_rmse");
    r.va_weighted_rmse = num("va_weighted_rmse");
    r.va_ne = num("va_ne");
    r.va_calibration = num("va_calibration");
    r.best = j.value("best", false);
  }
  return r;
}

nlohmann::json EpochReport::ToJson() const { return ReportToJson(*this); }

Result<std::shared_ptr<Model>> Train(const TrainOptions& options, ExampleSource& train, ExampleSource* validation,
                                     const std::string& pipeline_json, const TrainCallbacks& callbacks,
                                     TrainSummary* summary) {
  Trainer t(options, train, validation, callbacks);
  return t.Run(pipeline_json, summary);
}

}  // namespace fieldfm
