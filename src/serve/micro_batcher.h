// Groups concurrent cache misses into one batched Predict call, so dense
// layers run as matrix products instead of one vector product per request.
//
// Group commit: at most `slots` Predict calls run at once. A caller that finds
// a free slot and nobody queued predicts at once (no added latency when
// idle); otherwise it joins the newest open batch (same model, room left) or
// opens one and leads it. A leader runs its batch as soon as it is first in
// line and a slot is free, or when max_wait has passed, whichever is first.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>

#include "fieldfm/example.h"
#include "fieldfm/predictor.h"
#include "fieldfm/status.h"

namespace fieldfm::serve {

class MicroBatcher {
 public:
  struct Options {
    size_t max_batch = 256;
    std::chrono::microseconds max_wait{1000};
    int slots = 2;
  };
  struct Stats {
    uint64_t predict_calls = 0;  // Predict() calls on a model
    uint64_t rows = 0;           // rows predicted
    uint64_t max_rows = 0;       // largest single call
  };

  explicit MicroBatcher(Options options);

  // out.size() == rows.rows(). Fails only if the model threw.
  Status Predict(const std::shared_ptr<const Predictor>& model, const ExampleBlock& rows, std::span<float> out);

  Stats stats() const;
  size_t queued_rows() const;  // rows waiting in open batches (for tests)

 private:
  struct Batch;
  Status RunModel(const Predictor& model, const BatchView& rows, std::span<float> out);
  void Record(size_t rows);

  const Options options_;
  mutable std::mutex mu_;
  std::condition_variable leader_cv_;
  std::deque<std::shared_ptr<Batch>> open_;
  int in_flight_ = 0;
  Stats stats_;
};

}  // namespace fieldfm::serve
