// LoadPredictor: a model file plus its feature pipeline, for serving and
// batch prediction. Kept in its own object file: only callers of
// LoadPredictor link the data module's FeaturePipeline.
#include "fieldfm/predictor.h"

#include <fmt/format.h>

#include <chrono>

#include "fieldfm/train.h"
#include "train/model_data.h"
#include "train/predict_file.h"

namespace fieldfm {

namespace {

class ModelPredictor : public Predictor {
 public:
  ModelPredictor(std::shared_ptr<Model> model, FeaturePipeline pipeline)
      : model_(std::move(model)), pipeline_(std::move(pipeline)) {}
  const FeaturePipeline& pipeline() const override { return pipeline_; }
  void Predict(const BatchView& batch, std::span<float> out) const override { PredictBatch(*model_, batch, out); }
  nlohmann::json Metadata() const override { return ModelMetadata(*model_); }
  std::string Version() const override { return fmt::format("{:016x}", model_->checksum); }

 private:
  std::shared_ptr<Model> model_;
  FeaturePipeline pipeline_;
};

}  // namespace

Result<std::shared_ptr<const Predictor>> LoadPredictor(const std::string& model_path) {
  FIELDFM_ASSIGN_OR_RETURN(std::shared_ptr<Model> model, LoadModel(model_path));
  auto pipeline = FeaturePipeline::FromJson(model->pipeline_json);
  if (!pipeline.ok()) return pipeline.status().WithContext(model_path + ": feature pipeline");
  return std::shared_ptr<const Predictor>(std::make_shared<ModelPredictor>(std::move(model), std::move(*pipeline)));
}

}  // namespace fieldfm

namespace fieldfm {

namespace {

Result<std::unique_ptr<ExampleSource>> OpenWithModelPipeline(const Model& model, const std::string& model_path,
                                                             const std::string& input_path, int threads,
                                                             bool skip_bad_lines) {
  auto pipeline = FeaturePipeline::FromJson(PipelineJsonOf(model));
  if (!pipeline.ok()) return pipeline.status().WithContext(model_path + ": feature pipeline");
  ReadOptions read;
  read.threads = threads;
  read.skip_bad_lines = skip_bad_lines;
  return pipeline->Open(input_path, read);
}

}  // namespace

Result<FilePredictions> PredictFile(const std::string& model_path, const std::string& input_path, int threads,
                                    bool skip_bad_lines) {
  FilePredictions out;
  FIELDFM_ASSIGN_OR_RETURN(out.model, LoadModel(model_path, /*map_in_place=*/true));  // one command, then exit
  FIELDFM_ASSIGN_OR_RETURN(std::unique_ptr<ExampleSource> source,
                           OpenWithModelPipeline(*out.model, model_path, input_path, threads, skip_bad_lines));
  FIELDFM_RETURN_IF_ERROR(PredictSource(*out.model, *source, threads, &out.pred, &out.labels, &out.weights));
  return out;
}

Status PredictFileTo(const std::string& model_path, const std::string& input_path, int threads, bool skip_bad_lines,
                     const PredictionSink& sink, PredictTimings* timings) {
  using Clock = std::chrono::steady_clock;
  const auto seconds = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  };
  const auto start = Clock::now();
  FIELDFM_ASSIGN_OR_RETURN(std::shared_ptr<Model> model, LoadModel(model_path, /*map_in_place=*/true));
  const auto loaded = Clock::now();
  FIELDFM_ASSIGN_OR_RETURN(std::unique_ptr<ExampleSource> source,
                           OpenWithModelPipeline(*model, model_path, input_path, threads, skip_bad_lines));
  uint64_t rows = 0;
  FIELDFM_RETURN_IF_ERROR(PredictSource(*model, *source, threads,
                                        [&](std::span<const float> p, std::span<const float> l,
                                            std::span<const float> w) {
                                          rows += p.size();
                                          return sink(p, l, w);
                                        }));
  if (timings) *timings = PredictTimings{rows, seconds(start, loaded), seconds(loaded, Clock::now())};
  return Status::Ok();
}

}  // namespace fieldfm
