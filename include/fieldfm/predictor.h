// What serving and batch prediction need from a trained model: a pipeline to
// encode raw instances and a thread-safe batched forward pass.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <span>
#include <string>

#include "fieldfm/data.h"
#include "fieldfm/example.h"
#include "fieldfm/status.h"

namespace fieldfm {

class Predictor {
 public:
  virtual ~Predictor() = default;
  virtual const FeaturePipeline& pipeline() const = 0;
  // Predictions (probabilities for classification, outputs for regression),
  // one per row of `batch`. Must be safe to call from many threads at once.
  virtual void Predict(const BatchView& batch, std::span<float> out) const = 0;
  // Model type, fields, k, hyperparameters, "version" (content checksum), ...
  virtual nlohmann::json Metadata() const = 0;
  // Short stable identifier of the loaded parameters (changes on any new model).
  virtual std::string Version() const = 0;
};

// Loads a model file written by `fieldfm train`; never crashes on a bad file.
Result<std::shared_ptr<const Predictor>> LoadPredictor(const std::string& model_path);

}  // namespace fieldfm
