// Micro-batching of concurrent misses, driven directly (no HTTP).
#include <gtest/gtest.h>

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

// Waits (bounded) until `rows` rows sit in open batches.
bool AwaitQueued(const MicroBatcher& batcher, size_t rows) {
  for (int i = 0; i < 20000; ++i) {
    if (batcher.queued_rows() >= rows) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

// Sends inputs[0] first and holds its Predict call (the only slot) until
// every row of inputs[1..] waits in the batcher; then lets everything run.
// Returns each input's predictions.
std::vector<std::vector<float>> PredictQueuedBehindFirst(MicroBatcher& batcher,
                                                         const std::shared_ptr<FakePredictor>& model,
                                                         const std::vector<ExampleBlock>& inputs) {
  Gate gate;
  std::atomic<bool> first{true};
  model->on_predict = [&](size_t) {
    if (first.exchange(false)) gate.Wait();
  };
  std::vector<std::vector<float>> outputs;
  size_t queued = 0;
  for (const auto& in : inputs) outputs.emplace_back(in.rows());
  std::vector<std::thread> threads;
  auto send = [&](size_t t) {
    threads.emplace_back([&, t] { EXPECT_TRUE(batcher.Predict(model, inputs[t], outputs[t]).ok()); });
  };
  send(0);
  EXPECT_TRUE(gate.AwaitArrivals(1));
  for (size_t t = 1; t < inputs.size(); ++t) {
    send(t);
    queued += inputs[t].rows();
  }
  EXPECT_TRUE(AwaitQueued(batcher, queued));
  gate.Open();
  for (auto& t : threads) t.join();
  model->on_predict = nullptr;
  return outputs;
}

TEST(MicroBatcher, IdleBatcherPredictsAtOnce) {
  auto model = std::make_shared<FakePredictor>("v1", 3);
  MicroBatcher batcher({256, std::chrono::seconds(10), 1});
  ExampleBlock rows = Rows({1, 2, 3});
  std::vector<float> out(3);
  // With a 10 s max wait, returning at all shows no waiting happened.
  ASSERT_TRUE(batcher.Predict(model, rows, out).ok());
  EXPECT_EQ(out, Direct(*model, rows));
  EXPECT_EQ(model->batch_sizes(), std::vector<size_t>{3});
}

TEST(MicroBatcher, MissesQueuedBehindABusySlotShareOneCall) {
  auto model = std::make_shared<FakePredictor>("v1", 3);
  MicroBatcher batcher({256, std::chrono::seconds(10), 1});
  std::vector<ExampleBlock> inputs;
  for (uint32_t i = 0; i < 5; ++i) inputs.push_back(Rows({10 + i}));
  const auto outputs = PredictQueuedBehindFirst(batcher, model, inputs);
  EXPECT_EQ(model->batch_sizes(), (std::vector<size_t>{1, 4}));
  for (int t = 0; t < 5; ++t) EXPECT_EQ(outputs[t], Direct(*model, inputs[t])) << t;
  EXPECT_EQ(batcher.stats().predict_calls, 2u);
  EXPECT_EQ(batcher.stats().rows, 5u);
  EXPECT_EQ(batcher.stats().max_rows, 4u);
}

TEST(MicroBatcher, BatchesNeverExceedMaxBatch) {
  auto model = std::make_shared<FakePredictor>("v1", 3);
  MicroBatcher batcher({3, std::chrono::seconds(10), 1});
  std::vector<ExampleBlock> inputs;
  for (uint32_t i = 0; i < 7; ++i) inputs.push_back(Rows({i}));
  const auto outputs = PredictQueuedBehindFirst(batcher, model, inputs);
  size_t total = 0;
  for (size_t n : model->batch_sizes()) {
    EXPECT_LE(n, 3u);
    total += n;
  }
  EXPECT_EQ(total, 7u);
  EXPECT_EQ(model->batch_sizes().size(), 3u);  // 1 + 3 + 3
  for (int t = 0; t < 7; ++t) EXPECT_EQ(outputs[t], Direct(*model, inputs[t])) << t;
}

TEST(MicroBatcher, WaitIsBoundedEvenWhenNoSlotFrees) {
  auto model = std::make_shared<FakePredictor>("v1", 3);
  Gate gate;
  std::atomic<bool> first{true};
  model->on_predict = [&](size_t) {
    if (first.exchange(false)) gate.Wait();
  };
  MicroBatcher batcher({256, std::chrono::milliseconds(1), 1});
  ExampleBlock a = Rows({1}), b = Rows({2});
  std::vector<float> out_a(1), out_b(1);
  std::thread blocked([&] { ASSERT_TRUE(batcher.Predict(model, a, out_a).ok()); });
  ASSERT_TRUE(gate.AwaitArrivals(1));
  // The only slot stays busy, yet this call completes (after max_wait).
  ASSERT_TRUE(batcher.Predict(model, b, out_b).ok());
  EXPECT_EQ(out_b, Direct(*model, b));
  gate.Open();
  blocked.join();
  EXPECT_EQ(out_a, Direct(*model, a));
}

TEST(MicroBatcher, RowsOfDifferentModelsAreNeverMixed) {
  auto busy = std::make_shared<FakePredictor>("busy", 1);
  auto m1 = std::make_shared<FakePredictor>("v1", 3);
  auto m2 = std::make_shared<FakePredictor>("v2", 4);
  Gate gate;
  busy->on_predict = [&](size_t) { gate.Wait(); };
  MicroBatcher batcher({256, std::chrono::seconds(10), 1});
  ExampleBlock r0 = Rows({0}), r1 = Rows({1}), r2 = Rows({2}), r3 = Rows({3});
  std::vector<float> o0(1), o1(1), o2(1), o3(1);
  std::thread t0([&] { ASSERT_TRUE(batcher.Predict(busy, r0, o0).ok()); });
  ASSERT_TRUE(gate.AwaitArrivals(1));
  std::thread t1([&] { ASSERT_TRUE(batcher.Predict(m1, r1, o1).ok()); });
  ASSERT_TRUE(AwaitQueued(batcher, 1));
  std::thread t2([&] { ASSERT_TRUE(batcher.Predict(m2, r2, o2).ok()); });
  ASSERT_TRUE(AwaitQueued(batcher, 2));
  std::thread t3([&] { ASSERT_TRUE(batcher.Predict(m1, r3, o3).ok()); });
  ASSERT_TRUE(AwaitQueued(batcher, 3));
  gate.Open();
  for (auto* t : {&t0, &t1, &t2, &t3}) t->join();
  EXPECT_EQ(o1, Direct(*m1, r1));
  EXPECT_EQ(o2, Direct(*m2, r2));
  EXPECT_EQ(o3, Direct(*m1, r3));
  size_t m1_rows = 0;
  for (size_t n : m1->batch_sizes()) m1_rows += n;
  EXPECT_EQ(m1_rows, 2u);
  EXPECT_EQ(m2->batch_sizes(), std::vector<size_t>{1});
}

class ThrowingPredictor final : public Predictor {
 public:
  const FeaturePipeline& pipeline() const override { std::abort(); }
  void Predict(const BatchView&, std::span<float>) const override { throw std::runtime_error("boom"); }
  nlohmann::json Metadata() const override { return {}; }
  std::string Version() const override { return "t"; }
};

TEST(MicroBatcher, AThrowingModelBecomesAnError) {
  MicroBatcher batcher({256, std::chrono::milliseconds(1), 1});
  ExampleBlock rows = Rows({1});
  std::vector<float> out(1);
  Status st = batcher.Predict(std::make_shared<ThrowingPredictor>(), rows, out);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("boom"), std::string::npos);
}

}  // namespace
}  // namespace fieldfm::serve
