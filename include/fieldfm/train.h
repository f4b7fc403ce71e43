// Training, the model file, batch prediction and export.
//
//   TrainOptions o;  o.model.type = ModelType::kFfm;  o.auto_stop = true;
//   auto model = Train(o, *train_source, valid_source.get(), pipeline.ToJson(), {});
//   SaveModel(**model, "model.bin");
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "fieldfm/example.h"
#include "fieldfm/model.h"
#include "fieldfm/source.h"
#include "fieldfm/status.h"

namespace fieldfm {

struct TrainOptions {
  ModelSpec model;  // type, k, hidden sizes, activation, dropout, batch norm, loss
  // libffm's flags and meaning: -t, -r, -l, -s, --auto-stop.
  int epochs = 15;
  float lr = std::numeric_limits<float>::quiet_NaN();  // NaN: the optimizer's default (see docs/models.md)
  float lambda = 2e-5f;                               // L2 on embeddings and linear weights (per touch)
  float lambda_dense = 0.0f;                          // L2 on dense layer weight matrices
  int threads = 1;
  bool auto_stop = false;  // stop when validation gets worse; keep the best epoch's parameters
  int patience = 1;        // epochs without improvement before stopping
  OptimizerType optimizer = OptimizerType::kAdaGrad;  // sparse rows: linear weights and embeddings
  // Dense parameters (bias, MLP, batch norm). Unset: Adam for the deep models
  // (their dense gradient is summed over a mini-batch, so a scale-free method
  // is needed), `optimizer` for lr/fm/ffm. dense_lr NaN: `lr` when the two
  // optimizers are the same, else the dense optimizer's default.
  std::optional<OptimizerType> dense_optimizer;
  float dense_lr = std::numeric_limits<float>::quiet_NaN();
  float lr_decay = 1.0f;   // learning rate of epoch e = lr * lr_decay^e
  size_t batch_size = 0;   // 0: 1 for lr/fm/ffm, 256 for the deep models
  bool use_weights = false;  // weight each example's loss by its weight column
  uint64_t seed = 1;
  uint32_t min_count = 1;  // values seen fewer times are "unseen" at prediction
  UnseenMode unseen = UnseenMode::kMean;
  bool shuffle = true;     // shuffle rows within each block of block_rows, per epoch
  size_t block_rows = 1 << 16;
  // Several threads, lr/fm/ffm with SGD or AdaGrad: indices in at least this
  // share of the training rows are trained in per-thread copies, merged once
  // per chunk of rows (src/model/hot_rows.h). 0: none, pure hogwild.
  double hot_share = 1.0 / 128;
  std::string checkpoint_path;  // when set: written after every epoch
  std::string resume_path;      // when set: continue from this checkpoint
  // auto_stop: the file that holds the best epoch's sparse weights while
  // training goes on (not memory: they are as large as the model); removed
  // when Train returns. Empty: checkpoint_path + ".best", or without a
  // checkpoint a temporary file in $TMPDIR (else /tmp).
  std::string best_weights_path;

  nlohmann::json ToJson() const;
};

struct EpochReport {
  int epoch = 0;  // 1-based
  uint64_t rows = 0;
  double train_loss = 0;  // weighted mean logloss, or RMSE for squared / rate losses
  bool has_validation = false;
  double va_logloss = 0, va_auc = 0, va_rmse = 0, va_weighted_rmse = 0, va_ne = 0, va_calibration = 0;
  double seconds = 0;
  bool best = false;  // the validation score improved
  nlohmann::json ToJson() const;
};

struct Progress {
  int epoch = 0;
  uint64_t rows_done = 0, rows_total = 0;  // rows_total from the counting pass
  double running_loss = 0;
  double seconds = 0;
};

struct TrainCallbacks {
  std::function<void(const EpochReport&)> on_epoch;
  std::function<void(const Progress&)> on_progress;  // after each block of rows
};

// A trained model: spec, parameters, unseen-value vectors and the pipeline.
struct Model;

struct TrainSummary {
  std::vector<EpochReport> epochs;
  int best_epoch = 0;  // 0 when there was no validation
  bool stopped_early = false;
};

// Trains on `train` (read once to count values, then once per epoch).
// `validation` may be null. With threads == 1 and a fixed seed the result is
// bit-for-bit reproducible, including after resuming from a checkpoint.
Result<std::shared_ptr<Model>> Train(const TrainOptions& options, ExampleSource& train, ExampleSource* validation,
                                     const std::string& pipeline_json, const TrainCallbacks& callbacks,
                                     TrainSummary* summary = nullptr);

// One binary file, written atomically: magic, version, spec, pipeline,
// parameters, unseen vectors, value counts and an xxHash64 checksum.
Status SaveModel(const Model& model, const std::string& path);
// map_in_place: read the sparse tables in place from a mapping of the file
// (loads in the time of its checksum, no private copy of the weights) for a
// short-lived process; the file must not be truncated or rewritten in place
// while the model is alive (fieldfm replaces model files by rename, which is safe).
Result<std::shared_ptr<Model>> LoadModel(const std::string& path, bool map_in_place = false);

// Predictions (probabilities, or outputs for regression), one per row; safe
// to call from many threads on the same model.
void PredictBatch(const Model& model, const BatchView& batch, std::span<float> out);
// Receives one block of predictions at a time, in input order, with the
// block's labels and weights (1 when the input has none). One call at a time,
// but not always on the caller's thread: from a binary cache each worker
// hands its own block over, while the others go on predicting.
using PredictionSink =
    std::function<Status(std::span<const float> pred, std::span<const float> labels, std::span<const float> weights)>;
// Streams a whole source through the model with `threads` threads, keeping row
// order; memory stays at one block however long the input. A sink error stops it.
Status PredictSource(const Model& model, ExampleSource& source, int threads, const PredictionSink& sink);
// The same, collected into vectors (eval needs all of them for AUC).
Status PredictSource(const Model& model, ExampleSource& source, int threads, std::vector<float>* pred,
                     std::vector<float>* labels, std::vector<float>* weights);

const ModelSpec& SpecOf(const Model& model);
const std::string& PipelineJsonOf(const Model& model);
bool UsesWeights(const Model& model);
// Type, k, fields, hyperparameters, parameter counts, "version" (checksum hex).
nlohmann::json ModelMetadata(const Model& model);
// The graph of blocks, one node per line.
std::string DescribeGraph(const Model& model);
// TSV: table, field, feature index, count, target field (or -1), then k values.
// Unseen vectors are written with feature index "unseen".
Status ExportLatentTsv(const Model& model, const std::string& path);

}  // namespace fieldfm
