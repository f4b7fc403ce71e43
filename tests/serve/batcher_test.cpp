// Micro-batching of concurrent misses, driven directly (no HTTP): jobs are
// submitted without waiting, predict threads batch them and call Done().
#include <gtest/gtest.h>

#include <deque>

#include "serve/fake_model.h"
#include "serve/micro_batcher.h"

namespace fieldfm::serve {
namespace {

using testing::FakePredictor;
using testing::Gate;

ExampleBlock Rows(std::initializer_list<uint32_t> indices) {
  ExampleBlock block;
  for (uint32_t i : indices) {
    const Feature f[] = {{0, i, 1.0f}, {1, i * 7 + 1, 1.0f}};
    block.add(0.0f, 1.0f, f);
  }
  return block;
}

std::vector<float> Direct(const FakePredictor& model, const ExampleBlock& rows) {
  std::vector<float> out(rows.rows());
  for (size_t r = 0; r < rows.rows(); ++r) out[r] = model.Score(rows.row(r));
  return out;
}

// Counts completions so a test can wait for them (bounded: a hang guard).
class Completions {
 public:
  void Add() {
    std::lock_guard lock(mu_);
    ++done_;
    cv_.notify_all();
  }
  bool Await(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(20), [&] { return done_ >= n; });
  }
  int count() {
    std::lock_guard lock(mu_);
    return done_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int done_ = 0;
};

// One request's misses, as the server submits them.
class TestJob final : public BatchJob {
 public:
  TestJob(std::shared_ptr<FakePredictor> model, ExampleBlock block, Completions* completions)
      : model_(std::move(model)), block_(std::move(block)), predictions(block_.rows(), -1.0f),
        completions_(completions) {
    predictor = model_.get();
    rows = &block_;
    out = predictions;
  }
  void Done(const Status& st) override {
    ++done_calls;
    status = st;
    on_thread = std::this_thread::get_id();
    completions_->Add();
  }
  std::vector<float> Expected() const { return Direct(*model_, block_); }

  std::shared_ptr<FakePredictor> model_;
  ExampleBlock block_;
  std::vector<float> predictions;
  std::atomic<int> done_calls{0};
  Status status;
  std::thread::id on_thread;

 private:
  Completions* completions_;
};

// Waits (bounded) until `rows` rows wait in the queue.
bool AwaitQueued(const MicroBatcher& batcher, size_t rows) {
  for (int i = 0; i < 20000; ++i) {
    if (batcher.queued_rows() >= rows) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

// Holds the first Predict call of `model` (the only predict thread) until
// the caller opens the gate, so later jobs queue up behind it.
void HoldFirstCall(FakePredictor& model, Gate& gate) {
  auto first = std::make_shared<std::atomic<bool>>(true);
  model.on_predict = [&gate, first](size_t) {
    if (first->exchange(false)) gate.Wait();
  };
}

TEST(MicroBatcher, IdleBatcherPredictsAtOnce) {
  auto model = std::make_shared<FakePredictor>("v1", 3);
  MicroBatcher batcher({256, std::chrono::seconds(10), 1});
  batcher.Start();
  Completions completions;
  TestJob job(model, Rows({1, 2, 3}), &completions);
  batcher.Submit(&job);
  // With a 10 s max wait, completing at all shows no waiting happened.
  ASSERT_TRUE(completions.Await(1));
  EXPECT_TRUE(job.status.ok());
  EXPECT_EQ(job.predictions, job.Expected());
  EXPECT_EQ(model->batch_sizes(), std::vector<size_t>{3});
  EXPECT_NE(job.on_thread, std::this_thread::get_id()) << "Done runs on a predict thread";
}

TEST(MicroBatcher, SubmitReturnsWhileTheModelRuns) {
  auto model = std::make_shared<FakePredictor>("v1", 3);
  Gate gate;
  HoldFirstCall(*model, gate);
  MicroBatcher batcher({256, std::chrono::milliseconds(1), 1});
  batcher.Start();
  Completions completions;
  TestJob job(model, Rows({1}), &completions);
  batcher.Submit(&job);  // returns although the model call is held
  ASSERT_TRUE(gate.AwaitArrivals(1));
  EXPECT_EQ(completions.count(), 0);
  gate.Open();
  ASSERT_TRUE(completions.Await(1));
  EXPECT_EQ(job.predictions, job.Expected());
}

TEST(MicroBatcher, JobsQueuedBehindABusyCallShareOneCall) {
  auto model = std::make_shared<FakePredictor>("v1", 3);
  Gate gate;
  HoldFirstCall(*model, gate);
  MicroBatcher batcher({256, std::chrono::seconds(10), 1});
  batcher.Start();
  Completions completions;
  std::deque<TestJob> jobs;
  for (uint32_t i = 0; i < 5; ++i) jobs.emplace_back(model, Rows({10 + i}), &completions);
  batcher.Submit(&jobs[0]);
  ASSERT_TRUE(gate.AwaitArrivals(1));
  for (size_t t = 1; t < jobs.size(); ++t) batcher.Submit(&jobs[t]);
  EXPECT_EQ(batcher.queued_rows(), 4u);
  gate.Open();
  ASSERT_TRUE(completions.Await(5));
  EXPECT_EQ(model->batch_sizes(), (std::vector<size_t>{1, 4}));
  for (size_t t = 0; t < jobs.size(); ++t) {
    EXPECT_TRUE(jobs[t].status.ok());
    EXPECT_EQ(jobs[t].done_calls.load(), 1) << t;
    EXPECT_EQ(jobs[t].predictions, jobs[t].Expected()) << t;
  }
  EXPECT_EQ(batcher.stats().predict_calls, 2u);
  EXPECT_EQ(batcher.stats().rows, 5u);
  EXPECT_EQ(batcher.stats().max_rows, 4u);
}

TEST(MicroBatcher, BatchesNeverExceedMaxBatch) {
  auto model = std::make_shared<FakePredictor>("v1", 3);
  Gate gate;
  HoldFirstCall(*model, gate);
  MicroBatcher batcher({3, std::chrono::seconds(10), 1});
  batcher.Start();
  Completions completions;
  std::deque<TestJob> jobs;
  for (uint32_t i = 0; i < 7; ++i) jobs.emplace_back(model, Rows({i}), &completions);
  batcher.Submit(&jobs[0]);
  ASSERT_TRUE(gate.AwaitArrivals(1));
  for (size_t t = 1; t < jobs.size(); ++t) batcher.Submit(&jobs[t]);
  gate.Open();
  ASSERT_TRUE(completions.Await(7));
  EXPECT_EQ(model->batch_sizes(), (std::vector<size_t>{1, 3, 3}));
  for (size_t t = 0; t < jobs.size(); ++t) EXPECT_EQ(jobs[t].predictions, jobs[t].Expected()) << t;
}

TEST(MicroBatcher, AJobOfMaxBatchRowsGoesAlone) {
  auto model = std::make_shared<FakePredictor>("v1", 3);
  Gate gate;
  HoldFirstCall(*model, gate);
  MicroBatcher batcher({4, std::chrono::seconds(10), 1});
  batcher.Start();
  Completions completions;
  std::deque<TestJob> jobs;
  jobs.emplace_back(model, Rows({1}), &completions);
  jobs.emplace_back(model, Rows({2}), &completions);
  jobs.emplace_back(model, Rows({3, 4, 5, 6, 7}), &completions);
  jobs.emplace_back(model, Rows({8}), &completions);
  batcher.Submit(&jobs[0]);
  ASSERT_TRUE(gate.AwaitArrivals(1));
  for (size_t t = 1; t < jobs.size(); ++t) batcher.Submit(&jobs[t]);
  gate.Open();
  ASSERT_TRUE(completions.Await(4));
  EXPECT_EQ(model->batch_sizes(), (std::vector<size_t>{1, 1, 5, 1}));
  for (size_t t = 0; t < jobs.size(); ++t) EXPECT_EQ(jobs[t].predictions, jobs[t].Expected()) << t;
}

TEST(MicroBatcher, ASecondThreadLetsTheBatchGrowBehindABusyCall) {
  auto model = std::make_shared<FakePredictor>("v1", 3);
  Gate gate;
  HoldFirstCall(*model, gate);
  MicroBatcher batcher({256, std::chrono::seconds(10), 2});
  batcher.Start();
  Completions completions;
  std::deque<TestJob> jobs;
  for (uint32_t i = 0; i < 4; ++i) jobs.emplace_back(model, Rows({i}), &completions);
  batcher.Submit(&jobs[0]);
  ASSERT_TRUE(gate.AwaitArrivals(1));
  for (size_t t = 1; t < jobs.size(); ++t) batcher.Submit(&jobs[t]);
  // The idle thread leaves them queued (max_wait is 10 s) instead of
  // predicting each at once.
  EXPECT_TRUE(AwaitQueued(batcher, 3));
  gate.Open();
  ASSERT_TRUE(completions.Await(4));
  EXPECT_EQ(model->batch_sizes(), (std::vector<size_t>{1, 3}));
  for (size_t t = 0; t < jobs.size(); ++t) EXPECT_EQ(jobs[t].predictions, jobs[t].Expected()) << t;
}

TEST(MicroBatcher, ASecondThreadTakesOverAfterMaxWait) {
  auto model = std::make_shared<FakePredictor>("v1", 3);
  Gate gate;
  HoldFirstCall(*model, gate);
  MicroBatcher batcher({256, std::chrono::milliseconds(1), 2});
  batcher.Start();
  Completions completions;
  TestJob a(model, Rows({1}), &completions), b(model, Rows({2}), &completions);
  batcher.Submit(&a);
  ASSERT_TRUE(gate.AwaitArrivals(1));
  // The first call stays held, yet b completes (on the other thread).
  batcher.Submit(&b);
  ASSERT_TRUE(completions.Await(1));
  EXPECT_EQ(b.done_calls.load(), 1);
  EXPECT_EQ(a.done_calls.load(), 0);
  EXPECT_EQ(b.predictions, b.Expected());
  gate.Open();
  ASSERT_TRUE(completions.Await(2));
  EXPECT_EQ(a.predictions, a.Expected());
}

TEST(MicroBatcher, ASecondThreadRunsAQuarterOfMaxBatchAtOnce) {
  auto model = std::make_shared<FakePredictor>("v1", 3);
  Gate gate;
  HoldFirstCall(*model, gate);
  MicroBatcher batcher({8, std::chrono::seconds(10), 2});
  batcher.Start();
  Completions completions;
  TestJob a(model, Rows({1}), &completions), b(model, Rows({2}), &completions), c(model, Rows({3}), &completions);
  batcher.Submit(&a);
  ASSERT_TRUE(gate.AwaitArrivals(1));
  batcher.Submit(&b);  // 1 row: too few to run beside the held call, so it waits (max_wait is 10 s)
  EXPECT_TRUE(AwaitQueued(batcher, 1));
  batcher.Submit(&c);  // 2 rows queued = max_batch / 4: the idle thread runs them although a call is busy
  ASSERT_TRUE(completions.Await(2));
  EXPECT_EQ(a.done_calls.load(), 0);
  EXPECT_EQ(b.predictions, b.Expected());
  EXPECT_EQ(c.predictions, c.Expected());
  gate.Open();
  ASSERT_TRUE(completions.Await(3));
  EXPECT_EQ(model->batch_sizes(), (std::vector<size_t>{1, 2}));
}

TEST(MicroBatcher, ConcurrentSubmittersAllGetTheirRows) {
  auto model = std::make_shared<FakePredictor>("v1", 3);
  MicroBatcher batcher({8, std::chrono::microseconds(200), 2});
  batcher.Start();
  Completions completions;
  constexpr int kThreads = 4, kPerThread = 200;
  std::deque<TestJob> jobs;
  for (uint32_t i = 0; i < kThreads * kPerThread; ++i) jobs.emplace_back(model, Rows({i, i + 1000}), &completions);
  std::vector<std::thread> submitters;
  for (int t = 0; t < kThreads; ++t) {
    submitters.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) batcher.Submit(&jobs[t * kPerThread + i]);
    });
  }
  for (auto& t : submitters) t.join();
  ASSERT_TRUE(completions.Await(kThreads * kPerThread));
  for (size_t t = 0; t < jobs.size(); ++t) {
    ASSERT_EQ(jobs[t].done_calls.load(), 1) << t;
    ASSERT_EQ(jobs[t].predictions, jobs[t].Expected()) << t;
  }
  size_t total = 0;
  for (size_t n : model->batch_sizes()) {
    EXPECT_LE(n, 8u);
    total += n;
  }
  EXPECT_EQ(total, size_t(2 * kThreads * kPerThread));
  EXPECT_EQ(batcher.stats().rows, total);
}

TEST(MicroBatcher, RowsOfDifferentModelsAreNeverMixed) {
  auto m1 = std::make_shared<FakePredictor>("v1", 3);
  auto m2 = std::make_shared<FakePredictor>("v2", 4);
  Gate gate;
  HoldFirstCall(*m1, gate);
  MicroBatcher batcher({256, std::chrono::seconds(10), 1});
  batcher.Start();
  Completions completions;
  std::deque<TestJob> jobs;
  jobs.emplace_back(m1, Rows({0}), &completions);
  jobs.emplace_back(m1, Rows({1}), &completions);
  jobs.emplace_back(m2, Rows({2}), &completions);
  jobs.emplace_back(m2, Rows({3}), &completions);
  jobs.emplace_back(m1, Rows({4}), &completions);
  batcher.Submit(&jobs[0]);
  ASSERT_TRUE(gate.AwaitArrivals(1));
  for (size_t t = 1; t < jobs.size(); ++t) batcher.Submit(&jobs[t]);
  gate.Open();
  ASSERT_TRUE(completions.Await(5));
  for (size_t t = 0; t < jobs.size(); ++t) EXPECT_EQ(jobs[t].predictions, jobs[t].Expected()) << t;
  EXPECT_EQ(m1->batch_sizes(), (std::vector<size_t>{1, 1, 1}));
  EXPECT_EQ(m2->batch_sizes(), std::vector<size_t>{2});
}

TEST(MicroBatcher, StopPredictsWhatIsQueued) {
  auto model = std::make_shared<FakePredictor>("v1", 3);
  Gate gate;
  HoldFirstCall(*model, gate);
  MicroBatcher batcher({256, std::chrono::seconds(10), 1});
  batcher.Start();
  Completions completions;
  std::deque<TestJob> jobs;
  for (uint32_t i = 0; i < 3; ++i) jobs.emplace_back(model, Rows({i}), &completions);
  for (auto& job : jobs) batcher.Submit(&job);
  ASSERT_TRUE(gate.AwaitArrivals(1));
  std::thread stopper([&] { batcher.Stop(); });
  gate.Open();
  stopper.join();
  EXPECT_EQ(completions.count(), 3) << "Stop returns after every queued job is done";
  for (auto& job : jobs) EXPECT_EQ(job.predictions, job.Expected());
}

TEST(MicroBatcher, EmptyJobCompletesAtOnceAndPredictNowIsCounted) {
  auto model = std::make_shared<FakePredictor>("v1", 3);
  MicroBatcher batcher({4, std::chrono::seconds(10), 1});  // not started: nothing may need a thread
  Completions completions;
  TestJob empty(model, ExampleBlock(), &completions);
  batcher.Submit(&empty);
  EXPECT_EQ(empty.done_calls.load(), 1);
  EXPECT_TRUE(empty.status.ok());
  ExampleBlock big = Rows({1, 2, 3, 4, 5, 6});
  std::vector<float> out(6);
  ASSERT_TRUE(batcher.PredictNow(*model, big.view(), out).ok());
  EXPECT_EQ(out, Direct(*model, big));
  EXPECT_EQ(batcher.stats().predict_calls, 1u);
  EXPECT_EQ(batcher.stats().max_rows, 6u);
  EXPECT_TRUE(model->calls.load() == 1);
}

class ThrowingPredictor final : public Predictor {
 public:
  const FeaturePipeline& pipeline() const override { std::abort(); }
  void Predict(const BatchView&, std::span<float>) const override { throw std::runtime_error("boom"); }
  nlohmann::json Metadata() const override { return {}; }
  std::string Version() const override { return "t"; }
};

TEST(MicroBatcher, AThrowingModelFailsEveryJobOfItsBatch) {
  auto model = std::make_shared<FakePredictor>("v1", 3);  // only to hold the thread
  Gate gate;
  HoldFirstCall(*model, gate);
  ThrowingPredictor throwing;
  MicroBatcher batcher({256, std::chrono::seconds(10), 1});
  batcher.Start();
  Completions completions;
  TestJob first(model, Rows({1}), &completions), a(model, Rows({2}), &completions), b(model, Rows({3}), &completions);
  a.predictor = &throwing;
  b.predictor = &throwing;
  batcher.Submit(&first);
  ASSERT_TRUE(gate.AwaitArrivals(1));
  batcher.Submit(&a);
  batcher.Submit(&b);
  gate.Open();
  ASSERT_TRUE(completions.Await(3));
  EXPECT_TRUE(first.status.ok());
  for (TestJob* job : {&a, &b}) {
    ASSERT_FALSE(job->status.ok());
    EXPECT_NE(job->status.message().find("boom"), std::string::npos);
  }
  ExampleBlock rows = Rows({1});
  std::vector<float> out(1);
  EXPECT_FALSE(batcher.PredictNow(throwing, rows.view(), out).ok());
}

}  // namespace
}  // namespace fieldfm::serve
