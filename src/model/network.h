// A model is a graph of blocks (model/blocks.h). Network holds one graph with
// its activations and gradient buffers; its parameters live in a ParamStore
// that several Networks (one per training thread) can share.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fieldfm/model.h"
#include "fieldfm/status.h"
#include "model/blocks.h"
#include "model/ffm_fused.h"
#include "model/params.h"

namespace fieldfm {

class alignas(64) Network {  // aligned: one per training thread, written every row
 public:
  // Builds the graph of `spec`. Parameters missing from `store` are created
  // (optimizer state for `store->state` floats per weight) and initialised
  // from `init_seed` and their name, so initialisation never depends on
  // declaration order. Existing parameters must have the expected shapes.
  static Result<std::unique_ptr<Network>> Build(const ModelSpec& spec, ParamStore* store, bool use_weights,
                                                uint64_t init_seed = 1);

  void Forward(const BatchView& b, const RunContext& ctx);
  // Gradients of the loss of the last Forward (the same batch), accumulated.
  void Backward(const BatchView& b, const RunContext& ctx);
  void ZeroGrad();
  // One optimizer step with the accumulated gradients (lazy for sparse rows).
  void Apply(const OptimizerConfig& c, uint64_t step);
  // The two halves of Apply, for callers that serialise the dense half.
  void ApplyDense(const OptimizerConfig& c, uint64_t step);
  void ApplySparse(const OptimizerConfig& c, uint64_t step);
  // ZeroGrad, Forward, Backward and Apply on `b`, or a fused kernel that
  // gives the same bytes where one exists (one row per step: lr and fm not
  // with Adam; ffm with k = 4 and AdaGrad). `next` (may be empty): the next
  // step's first row, to prefetch.
  // Its loss is step_loss_sum() / step_weight_sum().
  void TrainStep(const BatchView& b, const RunContext& ctx, const OptimizerConfig& c, uint64_t step,
                 std::span<const Feature> next = {});
  double step_loss_sum() const { return step_loss_; }
  double step_weight_sum() const { return step_weight_; }
  // Tests compare the fused kernels with the generic graph.
  void set_fused(bool on) { fused_on_ = on; }
  // Set by the trainer when several threads share dense parameters: TrainStep
  // then applies the dense half under it (the sparse half stays lock-free).
  void set_dense_mutex(std::mutex* mu) { dense_mutex_ = mu; }
  uint64_t fused_steps() const { return fused_steps_; }
  // Several training threads: the one-row kernels (lr, fm, ffm k = 4) train
  // on this thread's copies of `hot`'s rows and the bias (model/hot_rows.h).
  // False, changing nothing, for a model without such a kernel. Pull before
  // the first step; Merge (under the trainers' one `mu`) adds the copies'
  // changes to the shared tables.
  bool UseHotRows(std::shared_ptr<const HotIndex> hot);
  void PullHotRows(std::mutex& mu);
  void MergeHotRows(std::mutex& mu, bool warm);
  // lr and fm after UseHotRows: the copies are found through `r`'s redirects
  // in the linear table while it is installed (model/hot_rows.h). False,
  // changing nothing, for other models, fm with mean pooling and with the
  // fused kernels off.
  bool RedirectHotRows(RedirectedRows* r);

  // Inference predictions of `b` into out[0, b.rows): Forward, or a fused
  // kernel with the same result where one exists (ffm, k = 4).
  void Predict(const ParamStore& store, const BatchView& b, std::span<float> out);
  const Mat& predictions() const { return nodes_.back().out; }
  const LossBlock& loss() const { return *loss_; }
  // The score φ before the output link.
  const Mat& score() const { return nodes_[nodes_.size() - 2].out; }

  std::vector<DenseGradRef> DenseGrads();
  std::vector<SparseGradRef> SparseGrads();
  // "bias -> linear -> ..." one line per node, for inspect and docs.
  std::string Describe() const;

  // Graph construction (used by the model declarations).
  int Add(std::unique_ptr<Block> block, std::vector<int> inputs);
  int out_dim(int node) const { return nodes_[node].block->out_dim(); }

 private:
  struct Node {
    std::unique_ptr<Block> block;
    std::vector<int> inputs;
    Mat out, grad;
  };
  std::vector<Node> nodes_;
  LossBlock* loss_ = nullptr;
  std::vector<DenseGradRef> dense_refs_;  // collected once: Apply allocates nothing
  std::vector<SparseGradRef> sparse_refs_;
  std::vector<const Mat*> in_scratch_;
  std::vector<Mat*> din_scratch_;
  std::unique_ptr<LinearFmStep> linear_fm_;
  std::unique_ptr<FusedFfm> fused_ffm_;
  std::unique_ptr<HotRows> hot_rows_;
  ParamStore* store_ = nullptr;
  bool fused_on_ = true;
  std::mutex* dense_mutex_ = nullptr;
  uint64_t fused_steps_ = 0;
  double step_loss_ = 0, step_weight_ = 0;
  friend class GraphBuilder;
};

}  // namespace fieldfm
