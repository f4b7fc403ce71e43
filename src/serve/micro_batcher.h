// Groups the cache misses of concurrent requests into batched Predict calls,
// so dense layers run as matrix products instead of one vector product per
// request, without a thread blocking per request.
//
// Asynchronous: an I/O thread Submit()s a request's missing rows as a
// BatchJob and goes back to its event loop. `threads` predict threads each
// take everything queued (same model, up to max_batch rows), run one Predict,
// and call each job's Done() on that predict thread. While one call runs, the
// next batch fills up behind it, so the batch size follows the load.
//
// A second predict thread only starts a batch while another call runs once
// the oldest queued job has waited max_wait (or a quarter of max_batch rows
// is queued): an idle core then takes over under a backlog, but light load
// still makes few, larger calls.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "fieldfm/example.h"
#include "fieldfm/predictor.h"
#include "fieldfm/status.h"

namespace fieldfm::serve {

// A request's rows waiting for the model. The submitter owns it (and the
// model, rows and out it points at) until Done() has been called.
class BatchJob {
 public:
  const Predictor* predictor = nullptr;  // all rows of a job go to this model
  const ExampleBlock* rows = nullptr;
  std::span<float> out;  // rows->rows() predictions, written before Done()

  // Called exactly once, on a predict thread, after `out` is written (or the
  // model failed: then `status` says why). Must not block.
  virtual void Done(const Status& status) = 0;

 protected:
  ~BatchJob() = default;

 private:
  friend class MicroBatcher;
  std::chrono::steady_clock::time_point queued_at_;
};

class MicroBatcher {
 public:
  struct Options {
    size_t max_batch = 256;
    std::chrono::microseconds max_wait{1000};
    int threads = 1;
  };
  struct Stats {
    uint64_t predict_calls = 0;  // Predict() calls on a model
    uint64_t rows = 0;           // rows predicted
    uint64_t max_rows = 0;       // largest single call
  };

  explicit MicroBatcher(Options options);
  ~MicroBatcher();  // Stop()s
  MicroBatcher(const MicroBatcher&) = delete;
  MicroBatcher& operator=(const MicroBatcher&) = delete;

  // Starts the predict threads (once).
  void Start();
  // Predicts everything queued, then joins the threads. Submit no more after.
  void Stop();

  // Queues `job`; its Done() follows on a predict thread. A job of max_batch
  // rows or more is a batch of its own. Jobs with no rows complete at once.
  void Submit(BatchJob* job);

  // Runs one Predict call on the calling thread (a request that is a batch
  // already), counted in stats(). Fails only if the model threw.
  Status PredictNow(const Predictor& model, const BatchView& rows, std::span<float> out);

  Stats stats() const;
  size_t queued_rows() const;  // rows waiting for a predict thread (for tests)

 private:
  void Run();
  // Takes the next batch off the queue into `jobs`; false once stopped and drained.
  bool Take(std::unique_lock<std::mutex>& lock, std::vector<BatchJob*>* jobs);
  static Status CallModel(const Predictor& model, const BatchView& rows, std::span<float> out);
  void Record(size_t rows);
  // Queued rows that a second thread runs at once, busy or not: a quarter
  // of max_batch already makes the dense layers efficient matrix products.
  size_t BigEnough() const { return std::max<size_t>(1, options_.max_batch / 4); }

  const Options options_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  std::deque<BatchJob*> queue_;
  size_t queued_rows_ = 0;
  int busy_ = 0;      // predict threads inside a model call
  int sleeping_ = 0;  // predict threads waiting for an empty queue to fill
  int waiting_ = 0;   // predict threads letting a batch grow behind a busy one
  bool stopping_ = false;
  Stats stats_;
  std::vector<std::thread> threads_;
};

}  // namespace fieldfm::serve
