// A test fixture running a Server on a fake model file, with small HTTP helpers.
#pragma once

#include "serve/fake_model.h"

namespace fieldfm::testing {

using nlohmann::json;

class ServerFixture : public ::testing::Test {
 protected:
  void SetUp() override { WriteModelFile(model_path_, "fake v1 7"); }

  // Starts a server on the fake model with `tweak` applied to the options.
  void StartServer(const std::function<void(ServeOptions&)>& tweak = nullptr) {
    ServeOptions o = TestOptions(model_path_, &store_, &log_, &log_mu_);
    if (tweak) tweak(o);
    auto created = Server::Create(std::move(o));
    ASSERT_TRUE(created.ok()) << created.status().message();
    server_ = std::move(created).value();
    ASSERT_TRUE(server_->Start().ok());
    ASSERT_TRUE(server_->WaitForFirstModel().ok());
  }

  httplib::Client Client() {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(std::chrono::seconds(20));
    return c;
  }

  // POSTs a JSON body; returns the status and the parsed answer.
  std::pair<int, json> Post(const std::string& path, const std::string& body) {
    auto c = Client();
    auto res = c.Post(path.c_str(), body, "application/json");
    EXPECT_TRUE(res) << "request failed: " << httplib::to_string(res.error());
    if (!res) return {0, json()};
    return {res->status, json::parse(res->body, nullptr, false)};
  }

  std::string Get(const std::string& path, int* status = nullptr) {
    auto c = Client();
    auto res = c.Get(path.c_str());
    EXPECT_TRUE(res);
    if (!res) return {};
    if (status) *status = res->status;
    return res->body;
  }

  // The value of a sample line `name value` in the metrics text, or -1.
  double Metric(const std::string& name) {
    const std::string text = Get("/metrics");
    const std::string prefix = name + " ";
    size_t pos = 0;
    while ((pos = text.find(prefix, pos)) != std::string::npos) {
      if (pos == 0 || text[pos - 1] == '\n') return std::stod(text.substr(pos + prefix.size()));
      pos += prefix.size();
    }
    return -1;
  }

  bool Logged(const std::string& needle) {
    std::lock_guard lock(log_mu_);
    for (const auto& line : log_) {
      if (line.find(needle) != std::string::npos) return true;
    }
    return false;
  }

  // Bounded wait for the server to report `version` (a hang guard only).
  bool AwaitVersion(const std::string& version) {
    for (int i = 0; i < 2000; ++i) {
      if (server_->model_version() == version) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }

  TempDir dir_;
  std::string model_path_ = dir_.File("model.fake");
  FakeModelStore store_;
  std::vector<std::string> log_;
  std::mutex log_mu_;
  std::unique_ptr<Server> server_;  // last: stops before what it logs into goes
};

}  // namespace fieldfm::testing
