// Hot reload: endpoint, RequestReload (the SIGHUP path), file polling, bad
// files, and requests in flight across a swap.
#include <gtest/gtest.h>

#include <set>

#include "serve/server_fixture.h"

namespace fieldfm {
namespace {

using nlohmann::json;
using testing::AsFloats;
using testing::DirectPredictions;
using testing::FakeModelStore;
using testing::FakePredictor;
using testing::Gate;
using testing::TempDir;
using testing::TestOptions;
using testing::WriteModelFile;

const json kInstances = json::parse(R"([{"user": "u1", "item": "i9"}, "0:5:1 1:77:1", {"user": "u2"}])");
const std::string kBody = json{{"instances", kInstances}}.dump();

using ReloadTest = testing::ServerFixture;

TEST_F(ReloadTest, ReloadEndpointSwapsInAGoodModel) {
  StartServer();
  auto [s1, before] = Post("/v1/predict", kBody);
  ASSERT_EQ(s1, 200);
  WriteModelFile(model_path_, "fake v2 8");
  auto [status, answer] = Post("/v1/reload", "");
  ASSERT_EQ(status, 200) << answer.dump();
  EXPECT_EQ(answer["model_version"], "v2");
  // Same instances, now cached under v1: the new model answers, not the cache.
  auto [s2, after] = Post("/v1/predict", kBody);
  ASSERT_EQ(s2, 200);
  EXPECT_EQ(after["model_version"], "v2");
  EXPECT_EQ(AsFloats(after["predictions"]), DirectPredictions(FakePredictor("v2", 8), kInstances));
  EXPECT_NE(AsFloats(after["predictions"]), AsFloats(before["predictions"]));
  EXPECT_TRUE(Logged("version v2"));
}

TEST_F(ReloadTest, CorruptModelIsRejectedAndTheOldOneKeepsServing) {
  StartServer();
  WriteModelFile(model_path_, "garbage that is no model");
  auto [status, answer] = Post("/v1/reload", "");
  EXPECT_EQ(status, 422);
  EXPECT_NE(answer["error"].get<std::string>().find("not a fake model"), std::string::npos) << answer.dump();
  EXPECT_NE(answer["error"].get<std::string>().find("still serving version v1"), std::string::npos);
  EXPECT_TRUE(Logged("rejected"));
  auto [s2, after] = Post("/v1/predict", kBody);
  ASSERT_EQ(s2, 200);
  EXPECT_EQ(after["model_version"], "v1");
  EXPECT_EQ(AsFloats(after["predictions"]), DirectPredictions(FakePredictor("v1", 7), kInstances));
  auto c = Client();
  EXPECT_NE(c.Get("/metrics")->body.find("fieldfm_model_reloads_total{result=\"rejected\"} 1"), std::string::npos);
}

TEST_F(ReloadTest, MissingModelFileIsRejected) {
  StartServer();
  std::filesystem::remove(model_path_);
  EXPECT_FALSE(server_->Reload().ok());
  EXPECT_EQ(server_->model_version(), "v1");
}

TEST_F(ReloadTest, IncompatibleModelIsRejected) {
  StartServer();
  WriteModelFile(model_path_, "fake v2 8 otherformat");
  Status st = server_->Reload();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(server_->model_version(), "v1");
}

TEST_F(ReloadTest, ModelThatCannotScoreIsRejected) {
  StartServer();
  store_.before_serving = [](FakePredictor& p) {
    p.on_predict = [](size_t) { throw std::runtime_error("broken weights"); };
  };
  WriteModelFile(model_path_, "fake v2 8");
  Status st = server_->Reload();
  EXPECT_EQ(st.code(), StatusCode::kCorruption);
  EXPECT_NE(st.message().find("broken weights"), std::string::npos);
  EXPECT_EQ(server_->model_version(), "v1");
}

TEST_F(ReloadTest, RequestReloadReloadsInTheBackground) {
  StartServer();
  WriteModelFile(model_path_, "fake v2 8");
  server_->RequestReload();
  ASSERT_TRUE(AwaitVersion("v2"));
}

TEST_F(ReloadTest, ChangedFileIsPickedUpByPolling) {
  StartServer([](ServeOptions& o) { o.poll_interval = std::chrono::milliseconds(10); });
  WriteModelFile(model_path_, "fake v2 8");
  ASSERT_TRUE(AwaitVersion("v2"));
  // A corrupt write is rejected once (not retried every poll), the old model stays.
  WriteModelFile(model_path_, "garbage");
  for (int i = 0; i < 2000 && !Logged("rejected"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(Logged("rejected"));
  EXPECT_EQ(server_->model_version(), "v2");
  WriteModelFile(model_path_, "fake v3 9");
  ASSERT_TRUE(AwaitVersion("v3"));
}

TEST_F(ReloadTest, InFlightRequestFinishesOnTheModelItStartedWith) {
  Gate in_predict, release;
  in_predict.Open();  // only counts arrivals
  store_.before_serving = [&](FakePredictor& p) {
    if (p.Version() != "v1") return;
    p.on_predict = [&](size_t rows) {
      if (rows == 1) return;  // the load-time probe
      in_predict.Wait();
      release.Wait();
    };
  };
  StartServer();
  std::pair<int, json> slow;
  std::thread client([&] { slow = Post("/v1/predict", kBody); });
  ASSERT_TRUE(in_predict.AwaitArrivals(1));
  WriteModelFile(model_path_, "fake v2 8");
  ASSERT_TRUE(server_->Reload().ok());
  auto [status, fresh] = Post("/v1/predict", kBody);  // not blocked: v2 has no gate
  ASSERT_EQ(status, 200);
  EXPECT_EQ(fresh["model_version"], "v2");
  release.Open();
  client.join();
  ASSERT_EQ(slow.first, 200);
  EXPECT_EQ(slow.second["model_version"], "v1");
  EXPECT_EQ(AsFloats(slow.second["predictions"]), DirectPredictions(FakePredictor("v1", 7), kInstances));
}

TEST_F(ReloadTest, ReloadsUnderLoadFailNoRequest) {
  StartServer([](ServeOptions& o) { o.cache_entries = 64; });
  std::atomic<bool> done{false};
  std::atomic<int> ok{0}, failed{0};
  std::mutex seen_mu;
  std::set<std::string> seen;
  std::vector<std::thread> clients;
  for (int t = 0; t < 3; ++t) {
    clients.emplace_back([&, t] {
      auto c = Client();
      int i = 0;
      while (!done) {
        const json instances = json::array({"0:" + std::to_string((t * 7919 + i++) % 200) + ":1 1:4:1"});
        auto res = c.Post("/v1/predict", json{{"instances", instances}}.dump(), "application/json");
        if (!res || res->status != 200) {
          failed++;
          continue;
        }
        const json answer = json::parse(res->body);
        const std::string version = answer["model_version"];
        // Every answer must be exactly what its model says (never a stale cache entry).
        const uint64_t seed = version == "v1" ? 7 : version == "v2" ? 8 : 0;
        if (seed == 0 || AsFloats(answer["predictions"]) != DirectPredictions(FakePredictor(version, seed), instances)) {
          failed++;
          continue;
        }
        ok++;
        std::lock_guard lock(seen_mu);
        seen.insert(version);
      }
    });
  }
  const char* files[] = {"fake v2 8", "corrupt", "fake v1 7", "fake v2 8 otherformat", "fake v2 8", "corrupt",
                         "fake v1 7", "fake v2 8"};
  // Lets the clients get a few answers from the current model (bounded wait).
  auto let_clients_run = [&] {
    const int target = ok.load() + 5;
    for (int i = 0; i < 4000 && ok.load() < target && failed.load() == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  };
  let_clients_run();
  for (const char* content : files) {
    WriteModelFile(model_path_, content);
    const bool good = std::string(content).starts_with("fake") && !std::string(content).ends_with("otherformat");
    EXPECT_EQ(server_->Reload().ok(), good) << content;
    let_clients_run();
  }
  done = true;
  for (auto& t : clients) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_GT(ok.load(), 0);
  EXPECT_EQ(seen, (std::set<std::string>{"v1", "v2"}));
  EXPECT_EQ(server_->model_version(), "v2");
}

TEST_F(ReloadTest, FirstLoadFailureIsReportedAndServerIsNotReady) {
  WriteModelFile(model_path_, "garbage");
  ServeOptions o = TestOptions(model_path_, &store_, &log_, &log_mu_);
  server_ = std::move(Server::Create(std::move(o))).value();
  ASSERT_TRUE(server_->Start().ok());
  Status st = server_->WaitForFirstModel();
  EXPECT_EQ(st.code(), StatusCode::kCorruption);
  EXPECT_FALSE(server_->ready());
  auto c = Client();
  EXPECT_EQ(c.Get("/readyz")->status, 503);
  // A good file later makes it ready.
  WriteModelFile(model_path_, "fake v1 7");
  ASSERT_TRUE(server_->Reload().ok());
  EXPECT_EQ(c.Get("/readyz")->status, 200);
}

}  // namespace
}  // namespace fieldfm
