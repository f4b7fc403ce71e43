// The blocks every model is built from. A block maps a mini-batch of inputs
// (row-major B x dim matrices, or the sparse features of the batch itself) to
// an output matrix, and back-propagates: Backward ADDS the gradient with
// respect to each input into din[i] (a node may feed several consumers) and
// accumulates the gradient of its own parameters until Apply() or ZeroGrad().
#pragma once

#include <Eigen/Dense>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "fieldfm/example.h"
#include "fieldfm/model.h"
#include "model/hot_rows.h"
#include "model/params.h"
#include "util/prefetch.h"

namespace fieldfm {

using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct RunContext {
  bool training = false;
  uint64_t seed = 0;  // per-batch randomness (dropout masks)
};

// Gradient of a sparse table: one entry (all slots of a row) per touched row.
// With `coalesce` (mini-batches of several rows) a row touched several times
// has one entry with the summed gradient, so the optimizer steps each row once
// per batch (as PyTorch's sparse optimizers); without it (one-row steps) every
// occurrence is its own entry, applied one after another (as libffm).
//
// Finding a row's entry: for tables up to kDirectRows rows, an array of one
// entry number per table row (a sparse set: one load, no probing, and clear()
// resets only the touched rows); it took 13% of an NFM epoch as a hash. Bigger
// tables keep the open-addressing hash, so the map never costs more than
// 4 B x kDirectRows per table and thread.
struct SparseGrad {
  static constexpr uint64_t kDirectRows = uint64_t(1) << 23;  // 32 MiB of entry numbers
  uint32_t width = 0;  // slots * k
  uint64_t table_rows = 0;  // rows of the table (0: unknown, the hash for every row)
  bool coalesce = false;
  std::vector<uint64_t> rows;
  std::vector<float> values;
  void clear() {
    if (!direct_.empty())
      for (const uint64_t r : rows)
        if (r < direct_.size()) direct_[r] = 0;
    if (hashed_) std::fill(slot_of_.begin(), slot_of_.end(), 0u);
    hashed_ = false;
    rows.clear();
    values.clear();
  }
  // Starts loading what Accumulate(row) will read first (its direct-map
  // entry: a random place in a table-sized array).
  void Prefetch(uint64_t row) const {
    if (row < direct_.size()) PrefetchL1(direct_.data() + row);
  }
  // Then, that entry loaded, the gradient values it points at (a row seen
  // earlier in the batch: a random place in `values`).
  void PrefetchValues(uint64_t row) const {
    if (row >= direct_.size() || direct_[row] == 0) return;
    const float* v = values.data() + size_t(direct_[row] - 1) * width;
    PrefetchWrite(v);
    PrefetchWrite(v + width - 1);
  }
  // The entry of `row` (zeros when new); callers add their gradient to it.
  float* Accumulate(uint64_t row) {
    if (coalesce) {
      if (row < table_rows && table_rows <= kDirectRows) {
        if (direct_.empty()) direct_.assign(table_rows, 0u);  // on the first batch: one-row steps never need it
        const uint32_t e = direct_[row];
        if (e != 0) return values.data() + size_t(e - 1) * width;
        direct_[row] = uint32_t(rows.size() + 1);
      } else {
        uint64_t e;
        if (FindOrInsert(row, &e)) return values.data() + size_t(e) * width;
      }
    }
    rows.push_back(row);
    values.resize(values.size() + width, 0.0f);
    return values.data() + values.size() - width;
  }

 private:
  // True with *entry set when `row` has one; else inserts it as the next entry.
  bool FindOrInsert(uint64_t row, uint64_t* entry) {
    hashed_ = true;
    if (2 * (rows.size() + 1) > slot_of_.size()) Rehash();
    const size_t mask = slot_of_.size() - 1;
    for (size_t h = Hash(row) & mask;; h = (h + 1) & mask) {
      const uint32_t e = slot_of_[h];
      if (e == 0) {
        slot_of_[h] = uint32_t(rows.size() + 1);
        return false;
      }
      if (rows[e - 1] == row) {
        *entry = e - 1;
        return true;
      }
    }
  }
  static size_t Hash(uint64_t x) { return size_t((x * 0x9e3779b97f4a7c15ULL) >> 17); }
  void Rehash() {
    slot_of_.assign(std::max<size_t>(64, slot_of_.size() * 2), 0u);
    const size_t mask = slot_of_.size() - 1;
    for (size_t e = 0; e < rows.size(); ++e) {
      size_t h = Hash(rows[e]) & mask;
      while (slot_of_[h] != 0) h = (h + 1) & mask;
      slot_of_[h] = uint32_t(e + 1);
    }
  }
  std::vector<uint32_t> slot_of_;  // open addressing: entry + 1, 0 = empty
  std::vector<uint32_t> direct_;   // table row -> entry + 1, 0 = none this batch
  bool hashed_ = false;            // slot_of_ holds entries of this batch
};

// For tests and the optimizer: a parameter and its accumulated gradient.
struct DenseGradRef {
  std::string name;
  DenseParam* param;
  FloatVec* grad;
};
struct SparseGradRef {
  std::string name;
  SparseTable* table;
  SparseGrad* grad;
};

class Block {
 public:
  virtual ~Block() = default;
  virtual std::string kind() const = 0;
  virtual int out_dim() const = 0;
  virtual void Forward(const BatchView& b, std::span<const Mat* const> in, Mat* out, const RunContext& ctx) = 0;
  virtual void Backward(const BatchView& b, std::span<const Mat* const> in, const Mat& out, const Mat& dout,
                        std::span<Mat* const> din, const RunContext& ctx) = 0;
  virtual void ZeroGrad() {}
  virtual void Grads(std::vector<DenseGradRef>* dense, std::vector<SparseGradRef>* sparse) {}
};

// ---- sparse input blocks (read the batch's features) ----------------------

// Where a feature's weights are: a table row (with optimizer state between
// slots) or, at inference, its field's unseen vector. Null: ignore the feature.
struct RowRef {
  const float* p = nullptr;
  uint32_t slot_stride = 0;
};
// Always inline: called per feature in every forward pass (GCC kept it out of
// line in LinearFmStep::Predict, 12% of an lr predict's profile).
[[gnu::always_inline]] inline RowRef ResolveRow(const ParamStore& store, const SparseTable& t, const Feature& f, bool training) {
  if (f.field >= store.num_fields) return {};
  if (f.index < t.rows && (training || store.known.empty() || store.known[f.index]))
    return {t.row(f.index), t.slot_stride()};
  if (training || t.unseen.empty()) return {};
  return {t.unseen_row(f.field), t.k};
}

// libffm's instance normalisation: a row's values scaled to unit L2 norm, so
// pair terms carry 1/Σx² (this) and the linear term 1/sqrt(Σx²).
float InstanceScale(std::span<const Feature> row);
inline float InstanceScale(const BatchView& b, size_t r) { return InstanceScale(b.row(r)); }

// φ = Σ_i w_j(i) x_i (one weight per index; unseen values weigh 0).
std::unique_ptr<Block> MakeLinear(ParamStore* store, SparseTable* table, bool normalize = false);
// e_f = Σ_{i in field f} v_j(i) x_i (or the mean): B x (F*k).
std::unique_ptr<Block> MakeEmbeddingPool(ParamStore* store, SparseTable* table, bool mean);
// e_{f,g} = Σ_{i in field f} v_{j(i),g} x_i: B x (F*F*k), laid out [f][g][k].
std::unique_ptr<Block> MakeFieldAwareEmbedding(ParamStore* store, SparseTable* table, bool mean);

// ---- interactions ----------------------------------------------------------

// Σ_{f<g} <e_f, e_g> in O(Fk): ½ Σ_d [(Σ_f e_fd)² − Σ_f e_fd²]. In: B x (F*k). Out: B x 1.
// normalize: times 1/Σ_i x_i² of the row (libffm's instance normalisation).
std::unique_ptr<Block> MakeFmSecondOrder(uint32_t fields, uint32_t k, bool normalize = false);
// Σ_{f<g} <e_{f,g}, e_{g,f}>. In: B x (F*F*k). Out: B x 1.
std::unique_ptr<Block> MakeFfmSecondOrder(uint32_t fields, uint32_t k, bool normalize = false);
// ½[(Σ_f e_f)² − Σ_f e_f²] element-wise. In: B x (F*k). Out: B x k.
std::unique_ptr<Block> MakeBiInteraction(uint32_t fields, uint32_t k, bool normalize = false);
// MakeEmbeddingPool -> MakeBiInteraction as one block (NFM's input), the same floats.
std::unique_ptr<Block> MakeEmbeddingBiInteraction(ParamStore* store, SparseTable* table, bool mean,
                                                  bool normalize = false);
// e_{f,g} ⊙ e_{g,f} for f<g, concatenated (B x F(F−1)/2·k) or summed (B x k).
std::unique_ptr<Block> MakeFieldPairProducts(uint32_t fields, uint32_t k, bool sum);
// MakeFieldAwareEmbedding followed by MakeFieldPairProducts in one block (the
// same results, without the B x F²k intermediate): NFFM's input layer.
std::unique_ptr<Block> MakeFieldPairEmbedding(ParamStore* store, SparseTable* table, bool mean, bool sum);

// ---- dense blocks ----------------------------------------------------------

std::unique_ptr<Block> MakeBias(DenseParam* b);
// y = x W + b with W stored row-major in x out.
std::unique_ptr<Block> MakeDense(DenseParam* w, DenseParam* b, int in, int out, std::string name);
std::unique_ptr<Block> MakeActivation(Activation a, int dim);
std::unique_ptr<Block> MakeDropout(float p, int dim, uint64_t salt);
// Training: batch statistics, running averages updated; inference: running averages.
std::unique_ptr<Block> MakeBatchNorm(DenseParam* gamma, DenseParam* beta, DenseParam* running_mean,
                                     DenseParam* running_var, int dim, std::string name);
std::unique_ptr<Block> MakeConcat(std::vector<int> dims);
std::unique_ptr<Block> MakeSum(int dim);

// ---- output ---------------------------------------------------------------

// Output link and loss. Forward: predictions (σ(φ) or φ) and the batch loss;
// Backward ignores dout and seeds dLoss/dφ. Loss is the weighted SUM over
// rows, so a step's size does not depend on the batch size.
class LossBlock : public Block {
 public:
  LossBlock(LossType loss, bool use_weights) : loss_(loss), use_weights_(use_weights) {}
  std::string kind() const override { return "loss"; }
  int out_dim() const override { return 1; }
  void Forward(const BatchView& b, std::span<const Mat* const> in, Mat* out, const RunContext& ctx) override;
  void Backward(const BatchView& b, std::span<const Mat* const> in, const Mat& out, const Mat& dout,
                std::span<Mat* const> din, const RunContext& ctx) override;
  // One row: the prediction for score z and label y, and its (unweighted) loss.
  static float RowForward(LossType loss, double z, double y, double* row_loss);
  // RowForward's prediction alone (inference: no loss to compute).
  static float RowPredict(LossType loss, double z);
  // dLoss/dφ of one row with prediction p, label y and weight w.
  static float RowGrad(LossType loss, float p, float y, float w);
  double loss_sum() const { return loss_sum_; }    // Σ w ℓ of the last forward
  double weight_sum() const { return weight_sum_; }
  bool sigmoid_link() const { return loss_ != LossType::kSquared; }

 private:
  LossType loss_;
  bool use_weights_;
  double loss_sum_ = 0, weight_sum_ = 0;
};

// ---- one-row lr / fm steps ----------------------------------------------------

// Fills store->known_linear from the "linear" table and the known flags of
// an inference store (no optimizer state), for LinearFmStep::Predict. False,
// leaving it empty, when the table has another shape or a known weight has
// kUnknownBits' bits.
bool FoldKnownIntoLinear(ParamStore* store);

// bias + linear (+ embedding -> fm) -> loss -> optimizer for ONE row, in one
// pass over its features: the graph's operations in the graph's order (the
// same bytes, tested) without its per-row matrices, virtual calls and
// gradient buffers. embedding is null for lr.
class LinearFmStep {
 public:
  LinearFmStep(DenseParam* bias, SparseTable* linear, SparseTable* embedding, uint32_t fields, bool normalize,
               bool mean, LossType loss, bool use_weights);
  // False, having done nothing: this step needs the graph (several rows,
  // Adam, mean pooling). `next`: the next step's features, to prefetch.
  bool Step(const BatchView& b, const OptimizerConfig& c, uint64_t step, std::span<const Feature> next,
            double* loss_sum, double* weight_sum);
  // Inference on one row, the graph's prediction to the byte (unseen rule as in
  // ResolveRow). False, having done nothing, for mean pooling.
  bool Predict(const ParamStore& store, std::span<const Feature> row, float* pred, std::span<const Feature> next);
  // Training with several threads: Step trains on these copies of the bias
  // and the hot rows (model/hot_rows.h); null: the shared tables.
  void set_hot_rows(HotRows* hot) { hot_ = hot; }
  // fm with mean pooling: Step leaves every row to the graph.
  bool mean_pooled() const { return emb_ && mean_; }

 private:
  template <int K, class Resolve>
  float ForwardK(std::span<const Feature> row, const Resolve& resolve, float bias, float* inst, float* lin_scale);
  // Starts loading the next row's weights (and, given, its known flags).
  void PrefetchNext(std::span<const Feature> next, const std::vector<uint8_t>* known) const;
  // Inference's prediction of one row, its rows found by `resolve`.
  template <class Resolve>
  float Score(std::span<const Feature> row, const Resolve& resolve);
  // Predict with store.known_linear for the known flags: the same bytes.
  bool PredictKnownLinear(const ParamStore& store, std::span<const Feature> row, float* pred,
                          std::span<const Feature> next);
  template <int K>
  bool StepK(const BatchView& b, const OptimizerConfig& c, uint64_t step, std::span<const Feature> next,
             double* loss_sum, double* weight_sum);
  DenseParam* bias_;
  SparseTable *lin_, *emb_;
  uint32_t F_;
  bool normalize_, mean_;
  LossType loss_;
  bool use_weights_;
  std::vector<float> e_, de_, grad_scratch_, scratch_;  // pooled field vectors and their gradients, F x k
  HotRows* hot_ = nullptr;
  std::vector<float*> hot_lin_, hot_emb_;  // with hot_: each feature's rows, by position in the row
};

}  // namespace fieldfm
