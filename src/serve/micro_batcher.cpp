#include "serve/micro_batcher.h"

#include <algorithm>
#include <exception>
#include <string>

namespace fieldfm::serve {

MicroBatcher::MicroBatcher(Options options) : options_(options) {}

MicroBatcher::~MicroBatcher() { Stop(); }

void MicroBatcher::Start() {
  std::lock_guard lock(mu_);
  if (!threads_.empty() || stopping_) return;
  for (int i = 0; i < std::max(1, options_.threads); ++i) threads_.emplace_back([this] { Run(); });
}

void MicroBatcher::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

Status MicroBatcher::CallModel(const Predictor& model, const BatchView& rows, std::span<float> out) {
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

Status MicroBatcher::PredictNow(const Predictor& model, const BatchView& rows, std::span<float> out) {
  if (rows.rows == 0) return Status::Ok();
  Status st = CallModel(model, rows, out);
  std::lock_guard lock(mu_);
  Record(rows.rows);
  return st;
}

void MicroBatcher::Submit(BatchJob* job) {
  const size_t n = job->rows->rows();
  if (n == 0) return job->Done(Status::Ok());
  job->queued_at_ = std::chrono::steady_clock::now();
  bool wake;
  {
    std::lock_guard lock(mu_);
    const bool was_empty = queue_.empty();
    const bool fills = queued_rows_ < BigEnough() && queued_rows_ + n >= BigEnough();
    queue_.push_back(job);
    queued_rows_ += n;
    // A busy thread comes back for the queue by itself: wake a sleeper only
    // when the queue starts filling, and a thread letting it grow when it
    // is big enough to run.
    wake = (sleeping_ > 0 && was_empty) || (waiting_ > 0 && fills);
  }
  if (wake) work_cv_.notify_one();
}

bool MicroBatcher::Take(std::unique_lock<std::mutex>& lock, std::vector<BatchJob*>* jobs) {
  while (true) {
    if (queue_.empty()) {
      if (stopping_) return false;
      ++sleeping_;
      work_cv_.wait(lock);
      --sleeping_;
      continue;
    }
    // Another call is running: let the batch grow behind it unless it is
    // big enough or its oldest job has waited long enough.
    if (busy_ > 0 && !stopping_ && queued_rows_ < BigEnough()) {
      const auto deadline = queue_.front()->queued_at_ + options_.max_wait;
      if (std::chrono::steady_clock::now() < deadline) {
        ++waiting_;
        work_cv_.wait_until(lock, deadline);
        --waiting_;
        continue;
      }
    }
    break;
  }
  // The longest prefix of one model that fits; a big job goes alone.
  const Predictor* predictor = queue_.front()->predictor;
  size_t rows = 0;
  while (!queue_.empty() && queue_.front()->predictor == predictor) {
    const size_t n = queue_.front()->rows->rows();
    if (rows > 0 && rows + n > options_.max_batch) break;
    jobs->push_back(queue_.front());
    queue_.pop_front();
    rows += n;
  }
  queued_rows_ -= rows;
  ++busy_;
  return true;
}

void MicroBatcher::Run() {
  std::vector<BatchJob*> jobs;
  ExampleBlock block;
  std::vector<float> out;
  std::unique_lock lock(mu_);
  while (true) {
    jobs.clear();
    if (!Take(lock, &jobs)) return;
    lock.unlock();

    Status st;
    size_t rows = 0;
    if (jobs.size() == 1) {  // no copy
      BatchJob& job = *jobs[0];
      rows = job.rows->rows();
      st = CallModel(*job.predictor, job.rows->view(), job.out);
    } else {
      block.clear();
      for (BatchJob* job : jobs) {
        for (size_t r = 0; r < job->rows->rows(); ++r) block.add(0.0f, 1.0f, job->rows->row(r));
      }
      rows = block.rows();
      out.resize(rows);
      st = CallModel(*jobs[0]->predictor, block.view(), out);
      size_t offset = 0;
      for (BatchJob* job : jobs) {
        const size_t n = job->rows->rows();
        std::copy_n(out.begin() + offset, n, job->out.begin());
        offset += n;
      }
      if (block.features.capacity() > (1u << 20)) block = ExampleBlock();  // one huge batch must not pin memory
    }

    lock.lock();
    --busy_;
    Record(rows);  // before Done(): a client that has its answer sees it counted
    lock.unlock();
    for (BatchJob* job : jobs) job->Done(st);
    lock.lock();
  }
}

MicroBatcher::Stats MicroBatcher::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

size_t MicroBatcher::queued_rows() const {
  std::lock_guard lock(mu_);
  return queued_rows_;
}

}  // namespace fieldfm::serve
