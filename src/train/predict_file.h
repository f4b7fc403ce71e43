// Command-line helpers: a model file + a text input -> predictions, reading
// the input with the pipeline stored in the model.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "fieldfm/status.h"
#include "fieldfm/train.h"

namespace fieldfm {

struct FilePredictions {
  std::shared_ptr<Model> model;
  std::vector<float> pred, labels, weights;  // input order
};

Result<FilePredictions> PredictFile(const std::string& model_path, const std::string& input_path, int threads,
                                    bool skip_bad_lines);
// Where a streaming prediction's time went (wall clock).
struct PredictTimings {
  uint64_t rows = 0;
  double load_seconds = 0;     // reading and checking the model file, building its graph
  double predict_seconds = 0;  // reading the input, predicting, and the sink
};

// Streaming: predictions reach `sink` block by block; nothing is kept.
Status PredictFileTo(const std::string& model_path, const std::string& input_path, int threads, bool skip_bad_lines,
                     const PredictionSink& sink, PredictTimings* timings = nullptr);

}  // namespace fieldfm
