// The blocks every model is built from. A block maps a mini-batch of inputs
// (row-major B x dim matrices, or the sparse features of the batch itself) to
// an output matrix, and back-propagates: Backward ADDS the gradient with
// respect to each input into din[i] (a node may feed several consumers) and
// accumulates the gradient of its own parameters until Apply() or ZeroGrad().
#pragma once

#include <Eigen/Dense>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "fieldfm/example.h"
#include "fieldfm/model.h"
#include "model/params.h"

namespace fieldfm {

using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct RunContext {
  bool training = false;
  uint64_t seed = 0;  // per-batch randomness (dropout masks)
};

// Gradient of a sparse table: one entry per touched (row, all slots) per
// feature occurrence; duplicates are applied one after another.
struct SparseGrad {
  uint32_t width = 0;  // slots * k
  std::vector<uint64_t> rows;
  std::vector<float> values;
  void clear() {
    rows.clear();
    values.clear();
  }
  float* Append(uint64_t row) {
    rows.push_back(row);
    values.resize(values.size() + width);
    return values.data() + values.size() - width;
  }
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
RowRef ResolveRow(const ParamStore& store, const SparseTable& t, const Feature& f, bool training);

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
std::unique_ptr<Block> MakeBiInteraction(uint32_t fields, uint32_t k);
// e_{f,g} ⊙ e_{g,f} for f<g, concatenated (B x F(F−1)/2·k) or summed (B x k).
std::unique_ptr<Block> MakeFieldPairProducts(uint32_t fields, uint32_t k, bool sum);

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
  double loss_sum() const { return loss_sum_; }    // Σ w ℓ of the last forward
  double weight_sum() const { return weight_sum_; }
  bool sigmoid_link() const { return loss_ != LossType::kSquared; }
  // One row: the prediction for score z and label y, and its (unweighted) loss.
  static float RowForward(LossType loss, double z, double y, double* row_loss);
  // dLoss/dφ of one row with prediction p, label y and weight w.
  static float RowGrad(LossType loss, float p, float y, float w);

 private:
  LossType loss_;
  bool use_weights_;
  double loss_sum_ = 0, weight_sum_ = 0;
};

}  // namespace fieldfm
