// The server end to end over real HTTP (httplib::Client on a free port).
#include <gtest/gtest.h>

#include "serve/server_fixture.h"

namespace fieldfm {
namespace {

using nlohmann::json;
using testing::AsFloats;
using testing::DirectPredictions;
using testing::FakeModelStore;
using testing::FakePredictor;
using testing::Gate;
using testing::ManualClock;
using testing::TempDir;
using testing::TestOptions;
using testing::WriteModelFile;

class ServerTest : public testing::ServerFixture {
 protected:
  FakePredictor reference_{"v1", 7};  // same parameters as the served model; keeps its counters clean
};

const json kInstances = json::parse(R"([
  {"user": "u1", "item": "i9", "hour": 13},
  "0:5:1 1:77:1 2:100000:0.5",
  {"item": "i2", "user": "u3", "colour": "red"},
  {},
  {"user": "u1", "item": "i9", "hour": 13}
])");

TEST_F(ServerTest, PredictionsEqualTheDirectBatchOutputInRequestOrder) {
  StartServer();
  auto [status, answer] = Post("/v1/predict", json{{"instances", kInstances}}.dump());
  ASSERT_EQ(status, 200) << answer.dump();
  EXPECT_EQ(AsFloats(answer["predictions"]), DirectPredictions(reference_, kInstances));
  EXPECT_EQ(answer["model_version"], "v1");
  EXPECT_EQ(answer["ignored_fields"], 1);  // "colour"
  // The predictions are not all alike, so the order check above means something.
  const auto p = AsFloats(answer["predictions"]);
  EXPECT_NE(p[0], p[1]);
  EXPECT_NE(p[1], p[2]);
}

TEST_F(ServerTest, TensorFlowServingShape) {
  StartServer();
  auto [status, answer] = Post("/v1/models/ctr:predict", json{{"instances", kInstances}}.dump());
  ASSERT_EQ(status, 200) << answer.dump();
  EXPECT_EQ(AsFloats(answer["predictions"]), DirectPredictions(reference_, kInstances));
}

TEST_F(ServerTest, EmptyInstanceListGivesEmptyPredictions) {
  StartServer();
  auto [status, answer] = Post("/v1/predict", R"({"instances": []})");
  ASSERT_EQ(status, 200);
  EXPECT_TRUE(answer["predictions"].empty());
}

TEST_F(ServerTest, RepeatedInstancesAreServedFromTheCache) {
  StartServer();
  const json first = json::parse(R"([{"user": "a", "item": "b"}, {"user": "c", "item": "d"}])");
  auto [s1, a1] = Post("/v1/predict", json{{"instances", first}}.dump());
  ASSERT_EQ(s1, 200);
  auto served = store_.Get("v1");
  EXPECT_EQ(served->rows.load(), 2u + 1u);  // + the load-time probe row
  EXPECT_EQ(Metric("fieldfm_cache_misses_total"), 2);
  EXPECT_EQ(Metric("fieldfm_cache_hits_total"), 0);

  // One batch mixing hits and misses; key order differs but the instance is the same.
  const json second = json::parse(R"([{"item": "d", "user": "c"}, {"user": "e", "item": "f"}, {"user": "a", "item": "b"}])");
  auto [s2, a2] = Post("/v1/predict", json{{"instances", second}}.dump());
  ASSERT_EQ(s2, 200);
  EXPECT_EQ(served->rows.load(), 3u + 1u) << "only the new instance reached the model";
  EXPECT_EQ(AsFloats(a2["predictions"]), DirectPredictions(reference_, second));
  EXPECT_EQ(Metric("fieldfm_cache_hits_total"), 2);
  EXPECT_EQ(Metric("fieldfm_cache_misses_total"), 3);
  EXPECT_EQ(Metric("fieldfm_cache_entries"), 3);
}

TEST_F(ServerTest, TokenOrderDoesNotChangeTheCacheKey) {
  StartServer();
  ASSERT_EQ(Post("/v1/predict", R"({"instances": ["0:1:1 1:2:1"]})").first, 200);
  ASSERT_EQ(Post("/v1/predict", R"({"instances": ["1:2:1 0:1:1"]})").first, 200);
  ASSERT_EQ(Post("/v1/predict", R"({"instances": ["1:2:0.5 0:1:1"]})").first, 200);
  EXPECT_EQ(Metric("fieldfm_cache_hits_total"), 1);
  EXPECT_EQ(Metric("fieldfm_cache_misses_total"), 2);
}

TEST_F(ServerTest, CachedPredictionsExpireAfterTheTtl) {
  ManualClock clock;
  StartServer([&](ServeOptions& o) {
    o.clock = clock.Fn();
    o.cache_ttl = std::chrono::seconds(60);
  });
  const std::string body = R"({"instances": [{"user": "a"}]})";
  auto served = store_.Get("v1");
  ASSERT_EQ(Post("/v1/predict", body).first, 200);
  clock.Advance(std::chrono::seconds(59));
  ASSERT_EQ(Post("/v1/predict", body).first, 200);
  EXPECT_EQ(served->rows.load(), 1u + 1u);
  clock.Advance(std::chrono::seconds(1));
  auto [status, answer] = Post("/v1/predict", body);
  ASSERT_EQ(status, 200);
  EXPECT_EQ(served->rows.load(), 2u + 1u) << "expired entry went back to the model";
  EXPECT_EQ(AsFloats(answer["predictions"]), DirectPredictions(reference_, json::parse(R"([{"user": "a"}])")));
  EXPECT_EQ(Metric("fieldfm_cache_expirations_total"), 1);
}

TEST_F(ServerTest, LeastRecentlyUsedEntriesAreEvicted) {
  StartServer([](ServeOptions& o) { o.cache_entries = 1; });
  auto served = store_.Get("v1");
  ASSERT_EQ(Post("/v1/predict", R"({"instances": ["0:1:1"]})").first, 200);
  ASSERT_EQ(Post("/v1/predict", R"({"instances": ["0:2:1"]})").first, 200);  // evicts 0:1
  ASSERT_EQ(Post("/v1/predict", R"({"instances": ["0:2:1"]})").first, 200);  // hit
  ASSERT_EQ(Post("/v1/predict", R"({"instances": ["0:1:1"]})").first, 200);  // miss again
  EXPECT_EQ(served->rows.load(), 3u + 1u);
  EXPECT_EQ(Metric("fieldfm_cache_evictions_total"), 2);
  EXPECT_EQ(Metric("fieldfm_cache_entries"), 1);
}

TEST_F(ServerTest, ZeroCacheEntriesDisablesTheCache) {
  StartServer([](ServeOptions& o) { o.cache_entries = 0; });
  auto served = store_.Get("v1");
  for (int i = 0; i < 3; ++i) ASSERT_EQ(Post("/v1/predict", R"({"instances": ["0:1:1"]})").first, 200);
  EXPECT_EQ(served->rows.load(), 3u + 1u);
  EXPECT_EQ(Metric("fieldfm_cache_entries"), 0);
}

TEST_F(ServerTest, ConcurrentClientsAllGetTheirOwnAnswers) {
  StartServer([](ServeOptions& o) { o.cache_entries = 0; });
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      auto c = Client();
      for (int i = 0; i < 40; ++i) {
        const json instances = json::array({"0:" + std::to_string(t * 1000 + i) + ":1 1:3:1"});
        auto res = c.Post("/v1/predict", json{{"instances", instances}}.dump(), "application/json");
        if (!res || res->status != 200 ||
            AsFloats(json::parse(res->body)["predictions"]) != DirectPredictions(reference_, instances)) {
          wrong++;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(Metric("fieldfm_predict_rows_total"), 240);
}

// ------------------------------------------------------------ bad requests

struct BadRequest {
  const char* name;
  std::string body;
  int status;
  int instance;        // -1: none named
  const char* field;   // "": none named
};

TEST_F(ServerTest, EachMalformedRequestClassGetsItsStatus) {
  StartServer([](ServeOptions& o) {
    o.max_body_bytes = 4096;
    o.max_instances = 3;
  });
  const std::vector<BadRequest> cases = {
      {"not json", R"({"instances": [)", 400, -1, ""},
      {"not an object", R"([1, 2])", 400, -1, ""},
      {"no instances", R"({"inputs": []})", 400, -1, ""},
      {"instances not an array", R"({"instances": {"user": "a"}})", 400, -1, ""},
      {"instance of wrong type", R"({"instances": [{"user": "a"}, 42]})", 400, 1, ""},
      {"field of wrong type", R"({"instances": ["0:1:1", {"user": "a", "hour": "noon"}]})", 400, 1, "hour"},
      {"bad token", R"({"instances": ["0:1:1", "1:2:1", "3-4"]})", 400, 2, ""},
      {"too many instances", R"({"instances": ["0:1:1", "0:1:1", "0:1:1", "0:1:1"]})", 413, -1, ""},
      {"body too large", R"({"instances": [")" + std::string(5000, ' ') + R"("]})", 413, -1, ""},
      {"deep nesting", R"({"instances": [)" + std::string(1500, '[') + std::string(1500, ']') + "]}", 400, 0, ""},
  };
  for (const auto& c : cases) {
    auto [status, answer] = Post("/v1/predict", c.body);
    EXPECT_EQ(status, c.status) << c.name;
    ASSERT_TRUE(answer.is_object() && answer.contains("error")) << c.name << ": " << answer.dump();
    EXPECT_FALSE(answer["error"].get<std::string>().empty()) << c.name;
    if (c.instance >= 0) {
      EXPECT_EQ(answer.value("instance", -1), c.instance) << c.name;
      EXPECT_NE(answer["error"].get<std::string>().find("instance " + std::to_string(c.instance)),
                std::string::npos) << c.name;
    }
    if (*c.field) EXPECT_EQ(answer.value("field", ""), c.field) << c.name;
  }
  int status = 0;
  Get("/v1/nothing-here", &status);
  EXPECT_EQ(status, 404);
  // The server still answers after all that.
  EXPECT_EQ(Post("/v1/predict", R"({"instances": ["0:1:1"]})").first, 200);
}

TEST_F(ServerTest, LargeBodyWithCurlsDefaultContentTypeIsAccepted) {
  StartServer();
  json instances = json::array();
  for (int i = 0; i < 500; ++i) instances.push_back("0:" + std::to_string(i) + ":1 1:2:1 2:3:0.25");
  const std::string body = json{{"instances", instances}}.dump();
  ASSERT_GT(body.size(), 8192u);  // over httplib's cap for form-encoded bodies
  auto res = Client().Post("/v1/predict", body, "application/x-www-form-urlencoded");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(AsFloats(json::parse(res->body)["predictions"]), DirectPredictions(reference_, instances));
}

TEST_F(ServerTest, KeepAliveConnectionServesManyRequests) {
  StartServer();
  auto c = Client();
  c.set_keep_alive(true);
  for (int i = 0; i < 20; ++i) {
    auto res = c.Post("/v1/predict", R"({"instances": ["0:1:1"]})", "application/json");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200);
  }
}

// ------------------------------------------------------ health and metadata

TEST_F(ServerTest, ReadyzIs503UntilTheModelIsLoaded) {
  Gate loading;
  ServeOptions o = TestOptions(model_path_, &store_);
  auto inner = o.loader;
  o.loader = [&](const std::string& path) {
    loading.Wait();
    return inner(path);
  };
  auto server = std::move(Server::Create(std::move(o))).value();
  ASSERT_TRUE(server->Start().ok());
  httplib::Client c("127.0.0.1", server->port());
  ASSERT_TRUE(loading.AwaitArrivals(1));
  auto before = c.Get("/readyz");
  ASSERT_TRUE(before);
  EXPECT_EQ(before->status, 503);
  EXPECT_EQ(c.Get("/healthz")->status, 200);
  EXPECT_EQ(c.Post("/v1/predict", R"({"instances": ["0:1:1"]})", "application/json")->status, 503);
  loading.Open();
  ASSERT_TRUE(server->WaitForFirstModel().ok());
  auto after = c.Get("/readyz");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200);
  EXPECT_EQ(json::parse(after->body)["model_version"], "v1");
}

TEST_F(ServerTest, ModelEndpointDescribesTheModel) {
  StartServer();
  int status = 0;
  const json j = json::parse(Get("/v1/model", &status));
  EXPECT_EQ(status, 200);
  EXPECT_EQ(j["model_version"], "v1");
  EXPECT_EQ(j["model_type"], "fake");
  EXPECT_EQ(j["fields"], 3);
  EXPECT_EQ(j["model_path"], model_path_);
  EXPECT_EQ(j["input"]["field_names"], json({"user", "item", "hour"}));
  EXPECT_EQ(j["input"]["format"], "fake");
  EXPECT_GT(j["loaded_at_unix"].get<double>(), 1.6e9);
  EXPECT_EQ(j["loaded_at"].get<std::string>().size(), std::string("2026-01-01T00:00:00Z").size());
}

TEST_F(ServerTest, MetricsCountRequestsLatencyCacheAndModel) {
  StartServer();
  ASSERT_EQ(Post("/v1/predict", R"({"instances": ["0:1:1", "0:1:1"]})").first, 200);
  ASSERT_EQ(Post("/v1/predict", R"({"instances": ["0:1:1"]})").first, 200);
  ASSERT_EQ(Post("/v1/predict", R"({"instances": 3})").first, 400);
  const std::string text = Get("/metrics");
  EXPECT_NE(text.find("fieldfm_requests_total{path=\"/v1/predict\",status=\"200\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("fieldfm_requests_total{path=\"/v1/predict\",status=\"400\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("fieldfm_request_duration_seconds_count{path=\"/v1/predict\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("fieldfm_request_duration_seconds_bucket{path=\"/v1/predict\",le=\"+Inf\"} 3\n"),
            std::string::npos);
  EXPECT_NE(text.find("# TYPE fieldfm_request_duration_seconds histogram"), std::string::npos);
  EXPECT_NE(text.find("fieldfm_model_info{version=\"v1\"} 1\n"), std::string::npos);
  // Copies inside one request both miss (looked up before either is predicted).
  EXPECT_EQ(Metric("fieldfm_cache_hits_total"), 1);
  EXPECT_EQ(Metric("fieldfm_cache_misses_total"), 2);
  EXPECT_EQ(Metric("fieldfm_cache_evictions_total"), 0);
  EXPECT_EQ(Metric("fieldfm_cache_entries"), 1);
  EXPECT_GT(Metric("fieldfm_model_load_timestamp_seconds"), 1.6e9);
  EXPECT_EQ(Metric("fieldfm_instances_total"), 3);
}

TEST_F(ServerTest, OversizedBodyIsCountedInMetrics) {
  StartServer([](ServeOptions& o) { o.max_body_bytes = 100; });
  ASSERT_EQ(Post("/v1/predict", R"({"instances": [")" + std::string(200, 'x') + R"("]})").first, 413);
  EXPECT_NE(Get("/metrics").find("fieldfm_requests_total{path=\"/v1/predict\",status=\"413\"} 1\n"),
            std::string::npos);
}

TEST_F(ServerTest, AModelThatThrowsGivesA500AndTheConnectionServesOn) {
  store_.before_serving = [](FakePredictor& p) {
    p.on_predict = [](size_t rows) {
      if (rows == 2) throw std::runtime_error("model exploded");  // not the 1-row load probe
    };
  };
  StartServer();
  auto c = Client();
  auto failed = c.Post("/v1/predict", R"({"instances": ["0:1:1", "0:2:1"]})", "application/json");
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->status, 500);
  EXPECT_NE(failed->body.find("model exploded"), std::string::npos) << failed->body;
  auto next = c.Post("/v1/predict", R"({"instances": ["0:3:1"]})", "application/json");  // same connection
  ASSERT_TRUE(next);
  ASSERT_EQ(next->status, 200);
  EXPECT_EQ(AsFloats(json::parse(next->body)["predictions"]),
            DirectPredictions(reference_, json::parse(R"(["0:3:1"])")));
  EXPECT_EQ(Metric("fieldfm_cache_entries"), 1) << "a failed prediction is not cached";
  EXPECT_NE(Get("/metrics").find("fieldfm_requests_total{path=\"/v1/predict\",status=\"500\"} 1\n"),
            std::string::npos);
}

TEST_F(ServerTest, ARequestOfMaxBatchInstancesSkipsTheQueueOfSmallOnes) {
  Gate in_predict, release;
  in_predict.Open();  // only counts arrivals
  store_.before_serving = [&](FakePredictor& p) {
    p.on_predict = [&](size_t rows) {
      if (rows != 2) return;  // hold only the small request's call (not the probe, not the big one)
      in_predict.Wait();
      release.Wait();
    };
  };
  StartServer([](ServeOptions& o) {
    o.max_batch = 4;
    o.predict_slots = 1;
  });
  std::pair<int, json> small;
  std::thread client([&] { small = Post("/v1/predict", R"({"instances": ["0:1:1", "0:2:1"]})"); });
  ASSERT_TRUE(in_predict.AwaitArrivals(1));
  // The only predict thread is held; a request that is a batch already still gets its answer.
  const json big = json::parse(R"(["0:10:1", "0:11:1", "0:12:1", "0:13:1", "0:14:1"])");
  auto [status, answer] = Post("/v1/predict", json{{"instances", big}}.dump());
  ASSERT_EQ(status, 200);
  EXPECT_EQ(AsFloats(answer["predictions"]), DirectPredictions(reference_, big));
  release.Open();
  client.join();
  ASSERT_EQ(small.first, 200);
  EXPECT_EQ(small.second["predictions"].size(), 2u);
  EXPECT_EQ(store_.Get("v1")->batch_sizes(), (std::vector<size_t>{1, 2, 5}));
  EXPECT_EQ(Metric("fieldfm_predict_calls_total"), 2);
  EXPECT_EQ(Metric("fieldfm_predict_rows_total"), 7);
}

// ------------------------------------------------------------- lifecycle

TEST_F(ServerTest, StopLetsInFlightRequestsFinish) {
  Gate in_predict, release;
  in_predict.Open();  // only counts arrivals
  store_.before_serving = [&](FakePredictor& p) {
    p.on_predict = [&](size_t rows) {
      if (rows == 1) return;  // the load-time probe
      in_predict.Wait();
      release.Wait();
    };
  };
  StartServer();
  std::pair<int, json> answer;
  std::thread client([&] { answer = Post("/v1/predict", R"({"instances": ["0:1:1", "0:2:1"]})"); });
  ASSERT_TRUE(in_predict.AwaitArrivals(1));
  std::thread stopper([&] { server_->Stop(); });
  // Opening the gate only after Stop started: the request must still complete.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  release.Open();
  client.join();
  stopper.join();
  EXPECT_EQ(answer.first, 200);
  EXPECT_EQ(answer.second["predictions"].size(), 2u);
  httplib::Client late("127.0.0.1", server_->port());
  late.set_connection_timeout(std::chrono::seconds(2));
  EXPECT_FALSE(late.Get("/healthz")) << "no longer listening";
  server_->Wait();  // returns at once once stopped
}

TEST_F(ServerTest, StopIsIdempotentAndSafeFromManyThreads) {
  StartServer();
  std::vector<std::thread> stoppers;
  for (int i = 0; i < 4; ++i) stoppers.emplace_back([&] { server_->Stop(); });
  for (auto& t : stoppers) t.join();
  server_->Stop();
  EXPECT_FALSE(Client().Get("/healthz"));
}

TEST_F(ServerTest, BadOptionsAreRejected) {
  auto with = [&](const std::function<void(ServeOptions&)>& tweak) {
    ServeOptions o = TestOptions(model_path_, &store_);
    tweak(o);
    return Server::Create(std::move(o)).status().code();
  };
  EXPECT_EQ(with([](ServeOptions& o) { o.model_path.clear(); }), StatusCode::kInvalidArgument);
  EXPECT_EQ(with([](ServeOptions& o) { o.port = 70000; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(with([](ServeOptions& o) { o.threads = 0; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(with([](ServeOptions& o) { o.predict_slots = -1; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(with([](ServeOptions& o) { o.io_threads = -1; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(with([](ServeOptions& o) { o.loader = nullptr; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(with([](ServeOptions& o) { o.encoder = nullptr; }), StatusCode::kInvalidArgument);
}

TEST_F(ServerTest, PortInUseIsAnIOError) {
  StartServer();
  ServeOptions o = TestOptions(model_path_, &store_);
  o.port = server_->port();
  auto second = std::move(Server::Create(std::move(o))).value();
  Status st = second->Start();
  EXPECT_EQ(st.code(), StatusCode::kIOError);
  EXPECT_NE(st.message().find(std::to_string(server_->port())), std::string::npos);
}

TEST_F(ServerTest, NonLoopbackBindIsLoggedAsAWarning) {
  StartServer([](ServeOptions& o) { o.host = "0.0.0.0"; });
  std::lock_guard lock(log_mu_);
  bool warned = false;
  for (const auto& line : log_) warned |= line.find("WARNING") != std::string::npos && line.find("0.0.0.0") != std::string::npos;
  EXPECT_TRUE(warned);
}

}  // namespace
}  // namespace fieldfm
