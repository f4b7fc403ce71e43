// Test doubles for the server: a deterministic Predictor, an encoder that
// needs no FeaturePipeline, a loader reading tiny text "model files", a
// manual clock, and a gate to hold a Predict call open.
#pragma once

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "fieldfm/serve.h"

namespace fieldfm::testing {

// Blocks callers of Wait() until Open(); counts who arrived.
class Gate {
 public:
  void Wait() {
    std::unique_lock lock(mu_);
    ++arrived_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
  }
  void Open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  // Bounded wait for `n` arrivals (a hang guard, not a timing assertion).
  bool AwaitArrivals(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(20), [&] { return arrived_ >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
  int arrived_ = 0;
};

// prediction = sigmoid(f(seed, features)), f a sum of per-feature hashes, so
// it is exact, order-independent and differs between seeds.
class FakePredictor final : public Predictor {
 public:
  FakePredictor(std::string version, uint64_t seed, std::string format = "fake")
      : version_(std::move(version)), seed_(seed), format_(std::move(format)) {}

  const FeaturePipeline& pipeline() const override {
    std::abort();  // the tests encode with FakeEncoder, never through a pipeline
  }

  static uint64_t Mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
  }

  float Score(std::span<const Feature> row) const {
    uint64_t h = Mix(seed_);
    for (const Feature& f : row) {
      uint32_t bits;
      std::memcpy(&bits, &f.value, 4);
      h += Mix((uint64_t(f.field) << 40) ^ (uint64_t(f.index) << 8) ^ Mix(bits) ^ seed_);
    }
    const double logit = (double(h % 2001) - 1000.0) / 300.0;
    return float(1.0 / (1.0 + std::exp(-logit)));
  }

  void Predict(const BatchView& batch, std::span<float> out) const override {
    calls.fetch_add(1);
    rows.fetch_add(batch.rows);
    {
      std::lock_guard lock(mu_);
      batch_sizes_.push_back(batch.rows);
    }
    if (on_predict) on_predict(batch.rows);
    for (size_t r = 0; r < batch.rows; ++r) out[r] = Score(batch.row(r));
  }

  nlohmann::json Metadata() const override {
    return {{"model_type", "fake"}, {"fields", 3}, {"format", format_}, {"version", version_}};
  }
  std::string Version() const override { return version_; }
  const std::string& format() const { return format_; }

  std::vector<size_t> batch_sizes() const {
    std::lock_guard lock(mu_);
    return batch_sizes_;
  }

  mutable std::atomic<int> calls{0};
  mutable std::atomic<size_t> rows{0};
  std::function<void(size_t rows)> on_predict;  // set before serving; runs inside Predict

 private:
  std::string version_;
  uint64_t seed_;
  std::string format_;
  mutable std::mutex mu_;
  mutable std::vector<size_t> batch_sizes_;
};

// Columns "user", "item" (categorical: strings) and "hour" (numeric) are
// fields 0, 1, 2; other names are ignored. Strings are "field:index:value" tokens.
class FakeEncoder final : public InstanceEncoder {
 public:
  Status Encode(const Predictor&, const nlohmann::json& instance, std::vector<Feature>* out, size_t* ignored,
                std::string* bad_field) const override {
    if (instance.is_string()) return EncodeTokens(instance.get<std::string>(), out);
    static const std::vector<std::string> kFields = {"user", "item", "hour"};
    for (auto it = instance.begin(); it != instance.end(); ++it) {
      auto pos = std::find(kFields.begin(), kFields.end(), it.key());
      if (pos == kFields.end()) {
        ++*ignored;
        continue;
      }
      const uint32_t field = uint32_t(pos - kFields.begin());
      if (field < 2 && it.value().is_string()) {
        out->push_back({field, uint32_t(std::hash<std::string>{}(it.value().get<std::string>()) % 100000), 1.0f});
      } else if (field == 2 && it.value().is_number()) {
        out->push_back({field, 100000, it.value().get<float>()});
      } else {
        *bad_field = it.key();
        return Status::DataError("field '" + it.key() + "': expected " + (field < 2 ? "a string" : "a number") +
                                 ", got " + it.value().type_name());
      }
    }
    return Status::Ok();
  }

  Status CheckCompatible(const Predictor& current, const Predictor& next) const override {
    auto& a = dynamic_cast<const FakePredictor&>(current);
    auto& b = dynamic_cast<const FakePredictor&>(next);
    if (a.format() != b.format()) return Status::InvalidArgument("input format changed (" + b.format() + ")");
    return Status::Ok();
  }

  nlohmann::json DescribeInput(const Predictor& model) const override {
    return {{"format", dynamic_cast<const FakePredictor&>(model).format()}, {"field_names", {"user", "item", "hour"}}};
  }

  static Status EncodeTokens(const std::string& text, std::vector<Feature>* out) {
    std::istringstream in(text);
    std::string token;
    while (in >> token) {
      unsigned field = 0, index = 0;
      float value = 0;
      if (std::sscanf(token.c_str(), "%u:%u:%f", &field, &index, &value) != 3) {
        return Status::DataError("bad feature (token '" + token + "')");
      }
      out->push_back({field, index, value});
    }
    return Status::Ok();
  }
};

// "Model files" are one line: `fake VERSION SEED [FORMAT]`; anything else is corrupt.
// The last predictor loaded per version is kept so tests can reach its counters.
class FakeModelStore {
 public:
  Result<std::shared_ptr<const Predictor>> Load(const std::string& path) {
    std::ifstream in(path);
    std::string magic, version, format = "fake";
    uint64_t seed = 0;
    if (!(in >> magic >> version >> seed) || magic != "fake") {
      return Status::Corruption(path + ":1: not a fake model (token '" + magic + "')");
    }
    in >> format;
    auto p = std::make_shared<FakePredictor>(version, seed, format);
    if (before_serving) before_serving(*p);
    std::lock_guard lock(mu_);
    loaded_[version] = p;
    return std::shared_ptr<const Predictor>(p);
  }
  std::shared_ptr<FakePredictor> Get(const std::string& version) {
    std::lock_guard lock(mu_);
    return loaded_[version];
  }
  ModelLoader Loader() {
    return [this](const std::string& path) { return Load(path); };
  }
  std::function<void(FakePredictor&)> before_serving;  // e.g. install on_predict hooks

 private:
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<FakePredictor>> loaded_;
};

// A monotonic clock the test moves by hand.
struct ManualClock {
  std::atomic<int64_t> now_ns{1'000'000'000};
  void Advance(std::chrono::milliseconds d) { now_ns += std::chrono::nanoseconds(d).count(); }
  SteadyClock Fn() {
    return [this] { return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(now_ns.load())); };
  }
};

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "fieldfm_serve_XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Replaces the file in one rename, as `fieldfm train` does.
inline void WriteModelFile(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp.writing";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << content << "\n";
  }
  std::filesystem::rename(tmp, path);
}

// Options every server test starts from: any free port, no polling, quiet log.
inline ServeOptions TestOptions(const std::string& model_path, FakeModelStore* store,
                                std::vector<std::string>* log_lines = nullptr, std::mutex* log_mu = nullptr) {
  ServeOptions o;
  o.model_path = model_path;
  o.port = 0;
  o.threads = 8;
  o.poll_interval = std::chrono::milliseconds(0);
  o.keep_alive_timeout = std::chrono::seconds(1);
  o.loader = store->Loader();
  o.encoder = std::make_shared<FakeEncoder>();
  o.log = [log_lines, log_mu](const std::string& line) {
    if (!log_lines) return;
    std::lock_guard lock(*log_mu);
    log_lines->push_back(line);
  };
  return o;
}

// Encodes instances as the server would and asks the predictor directly.
inline std::vector<float> DirectPredictions(const Predictor& model, const nlohmann::json& instances) {
  FakeEncoder encoder;
  ExampleBlock block;
  for (const auto& instance : instances) {
    std::vector<Feature> features;
    size_t ignored = 0;
    std::string field;
    EXPECT_TRUE(encoder.Encode(model, instance, &features, &ignored, &field).ok());
    block.add(0.0f, 1.0f, features);
  }
  std::vector<float> out(block.rows());
  model.Predict(block.view(), out);
  return out;
}

inline std::vector<float> AsFloats(const nlohmann::json& predictions) {
  std::vector<float> out;
  for (const auto& p : predictions) out.push_back(p.get<float>());
  return out;
}

}  // namespace fieldfm::testing
