#include "serve/micro_batcher.h"

#include <algorithm>
#include <exception>
#include <string>
#include <vector>

namespace fieldfm::serve {

struct MicroBatcher::Batch {
  std::shared_ptr<const Predictor> model;
  ExampleBlock block;
  std::vector<float> out;
  std::chrono::steady_clock::time_point deadline;
  bool done = false;
  Status status;
  std::condition_variable done_cv;
};

MicroBatcher::MicroBatcher(Options options) : options_(options) {}

Status MicroBatcher::RunModel(const Predictor& model, const BatchView& rows, std::span<float> out) {
  try {
    model.Predict(rows, out);
  } catch (const std::exception& e) {
    return Status::Internal(std::string("model prediction failed: ") + e.what());
  }
  return Status::Ok();
}

void MicroBatcher::Record(size_t rows) {
  stats_.predict_calls++;
  stats_.rows += rows;
  stats_.max_rows = std::max<uint64_t>(stats_.max_rows, rows);
}

Status MicroBatcher::Predict(const std::shared_ptr<const Predictor>& model, const ExampleBlock& rows,
                             std::span<float> out) {
  const size_t n = rows.rows();
  if (n == 0) return Status::Ok();
  const int slots = std::max(1, options_.slots);
  std::unique_lock lock(mu_);
  // Already a full batch, or an idle batcher: predict right away.
  const bool big = n >= options_.max_batch;
  if (big || (open_.empty() && in_flight_ < slots)) {
    ++in_flight_;
    lock.unlock();
    Status st = RunModel(*model, rows.view(), out);
    lock.lock();
    --in_flight_;
    Record(n);
    lock.unlock();
    leader_cv_.notify_all();
    return st;
  }

  std::shared_ptr<Batch> batch;
  bool leader = false;
  if (!open_.empty() && open_.back()->model == model &&
      open_.back()->block.rows() + n <= options_.max_batch) {
    batch = open_.back();
  } else {
    batch = std::make_shared<Batch>();
    batch->model = model;
    batch->deadline = std::chrono::steady_clock::now() + options_.max_wait;
    open_.push_back(batch);
    leader = true;
  }
  const size_t offset = batch->block.rows();
  for (size_t r = 0; r < n; ++r) batch->block.add(0.0f, 1.0f, rows.row(r));

  if (!leader) {
    batch->done_cv.wait(lock, [&] { return batch->done; });
    std::copy_n(batch->out.begin() + offset, n, out.begin());
    return batch->status;
  }

  leader_cv_.wait_until(lock, batch->deadline,
                        [&] { return open_.front() == batch && in_flight_ < slots; });
  open_.erase(std::find(open_.begin(), open_.end(), batch));  // closed: nobody joins any more
  ++in_flight_;
  const bool others_waiting = !open_.empty();
  lock.unlock();
  if (others_waiting) leader_cv_.notify_all();  // the next batch may be first in line now
  batch->out.resize(batch->block.rows());
  Status st = RunModel(*batch->model, batch->block.view(), batch->out);
  lock.lock();
  --in_flight_;
  Record(batch->block.rows());
  batch->status = st;
  batch->done = true;
  lock.unlock();
  batch->done_cv.notify_all();
  leader_cv_.notify_all();
  std::copy_n(batch->out.begin(), n, out.begin());
  return st;
}

MicroBatcher::Stats MicroBatcher::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

size_t MicroBatcher::queued_rows() const {
  std::lock_guard lock(mu_);
  size_t rows = 0;
  for (const auto& b : open_) rows += b->block.rows();
  return rows;
}

}  // namespace fieldfm::serve
