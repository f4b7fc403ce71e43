// The HTTP front end: routes, request decoding, cache + batcher plumbing, and
// the background reloader that swaps models atomically.
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <simdjson.h>
#include <sys/stat.h>

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

#include "fieldfm/serve.h"
#include "serve/http_server.h"
#include "serve/instance_key.h"
#include "serve/metrics.h"
#include "serve/micro_batcher.h"
#include "serve/prediction_cache.h"

namespace fieldfm {

using serve::Endpoint;

namespace {

// What identifies a version of the model file on disk (rename changes inode).
struct FileStamp {
  bool exists = false;
  int64_t mtime_ns = 0;
  int64_t size = 0;
  uint64_t inode = 0;
  friend bool operator==(const FileStamp&, const FileStamp&) = default;
};

FileStamp StatFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return {true, int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec, int64_t(st.st_size),
          uint64_t(st.st_ino)};
}

// One loaded model and what every request needs about it, fixed at load time.
struct LoadedModel {
  std::shared_ptr<const Predictor> predictor;
  std::string version;
  std::string version_json;  // JSON-escaped, quotes included
  uint64_t tag = 0;
  nlohmann::json metadata;
  nlohmann::json input;  // InstanceEncoder::DescribeInput
  std::chrono::system_clock::time_point loaded_at;
};

std::string JsonError(std::string_view message, int64_t instance = -1, std::string_view field = {}) {
  nlohmann::json j;
  j["error"] = message;
  if (instance >= 0) j["instance"] = instance;
  if (!field.empty()) j["field"] = field;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

const char* JsonTypeName(const nlohmann::json& j) { return j.type_name(); }

using TimePoint = std::chrono::steady_clock::time_point;

// Per-connection buffers of /v1/predict, so a request allocates (almost)
// nothing after warm-up. A request with cache misses is also the batcher's
// job: its misses go to a predict thread, Done() posts the rest of the
// request back to the connection's I/O thread.
struct PredictScratch final : serve::ConnectionState, serve::BatchJob {
  std::vector<Feature> features, sorted;
  ExampleBlock misses;
  std::vector<size_t> miss_positions;
  std::vector<uint64_t> keys;
  std::vector<float> predictions, miss_predictions;
  std::shared_ptr<const LoadedModel> model;  // only while the request is being answered
  size_t ignored = 0;

  // A request waiting for the model.
  serve::HttpExchange* exchange = nullptr;
  Endpoint endpoint{};
  TimePoint start;
  size_t instances = 0;
  Status status;
  std::function<void()> complete;  // answers the request on its I/O thread (set once per connection)

  void Done(const Status& st) override {
    status = st;
    exchange->Post(complete);
  }

  void Reset(size_t instances) {
    misses.clear();
    miss_positions.clear();
    keys.assign(instances, 0);
    predictions.assign(instances, 0.0f);
    ignored = 0;
  }
};

// Threads for work that may block (batched model calls, reloads), so the
// I/O threads never wait and a slow model call holds no connection hostage.
class BlockingPool {
 public:
  void Start(int threads) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
  }
  void Post(std::function<void()> task) {
    {
      std::lock_guard lock(mu_);
      tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
  }
  // Runs what is queued, then joins.
  void Stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

 private:
  void Run() {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;
      auto task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      task();
      lock.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

int PredictThreads(const ServeOptions& o) {
  return o.predict_slots > 0 ? o.predict_slots : int(std::max(1u, std::thread::hardware_concurrency()));
}

void DefaultLog(const std::string& line) {
  const auto now = std::chrono::system_clock::now();
  std::fprintf(stderr, "%s fieldfm serve: %s\n",
               fmt::format("{:%Y-%m-%dT%H:%M:%S}Z", std::chrono::floor<std::chrono::seconds>(now)).c_str(),
               line.c_str());
}

}  // namespace

struct Server::Impl {
  ServeOptions options;
  serve::PredictionCache cache;
  serve::MicroBatcher batcher;
  serve::RequestMetrics metrics;
  std::unique_ptr<serve::HttpServer> http;
  BlockingPool pool;
  int bound_port = 0;
  std::thread reload_thread;

  mutable std::mutex model_mu;
  std::shared_ptr<const LoadedModel> model;  // swapped whole under model_mu

  std::mutex reload_mu;  // one load at a time
  FileStamp last_stamp;
  std::atomic<uint64_t> reloads_ok{0}, reloads_failed{0}, ignored_fields{0}, instances_answered{0};

  std::mutex loop_mu;  // reloader thread wake-ups
  std::condition_variable loop_cv;
  bool reload_requested = false, stopping = false;

  std::promise<Status> first_load;
  std::shared_future<Status> first_load_done{first_load.get_future().share()};

  std::mutex stop_mu;
  std::condition_variable stopped_cv;
  bool started = false, stop_begun = false, stopped = false;

  explicit Impl(ServeOptions opts)
      : options(std::move(opts)),
        cache(options.cache_entries, options.cache_ttl, options.clock),
        batcher({options.max_batch, options.max_batch_wait, PredictThreads(options)}) {
    if (!options.log) options.log = DefaultLog;
  }

  std::shared_ptr<const LoadedModel> Current() const {
    std::lock_guard lock(model_mu);
    return model;
  }

  void Log(const std::string& line) const { options.log(line); }

  Status LoadNow();
  void ReloadLoop();
  void Handle(serve::HttpExchange& x);
  void Respond(serve::HttpExchange& x, Endpoint e, TimePoint start);
  void HandlePredict(serve::HttpExchange& x, Endpoint e, TimePoint start);
  void CompleteMisses(PredictScratch& s);
  void FinishPredict(serve::HttpExchange& x, PredictScratch& s, size_t n);
  int64_t DecodeTokenRequest(std::string_view body, const LoadedModel& model, PredictScratch& s);
  void LookUp(PredictScratch& s, const LoadedModel& model, size_t i);
  void HandleReload(serve::HttpExchange& x);
  void HandleModel(serve::HttpExchange& x) const;
  void HandleMetrics(serve::HttpExchange& x) const;
};

// ---------------------------------------------------------------- reloading

Status Server::Impl::LoadNow() {
  std::lock_guard reload_lock(reload_mu);
  const auto started_at = std::chrono::steady_clock::now();
  // Stamp before reading: a write during the load shows up as a change next poll.
  last_stamp = StatFile(options.model_path);
  auto reject = [&](const Status& st) {
    reloads_failed.fetch_add(1);
    Log(fmt::format("model {} rejected, {}: {}", options.model_path,
                    Current() ? "still serving version " + Current()->version : "no model loaded", st.message()));
    return st;
  };
  Result<std::shared_ptr<const Predictor>> loaded = Status::Internal("model loader threw");
  try {
    loaded = options.loader(options.model_path);
  } catch (const std::exception& e) {
    loaded = Status::Internal(std::string("model loader threw: ") + e.what());
  }
  if (!loaded.ok()) return reject(loaded.status());
  std::shared_ptr<const Predictor> next = std::move(loaded).value();
  if (!next) return reject(Status::Internal("model loader returned no model"));

  auto current = Current();
  if (current) {
    Status st = options.encoder->CheckCompatible(*current->predictor, *next);
    if (!st.ok()) return reject(st);
  }
  // Smoke test: a model that cannot score an empty instance is not served.
  ExampleBlock probe;
  probe.add(0.0f, 1.0f, {});
  float p = 0;
  try {
    next->Predict(probe.view(), std::span<float>(&p, 1));
  } catch (const std::exception& e) {
    return reject(Status::Corruption(std::string("probe prediction threw: ") + e.what()));
  }
  if (!std::isfinite(p)) return reject(Status::Corruption("probe prediction is not finite"));

  auto fresh = std::make_shared<LoadedModel>();
  fresh->predictor = next;
  fresh->version = next->Version();
  if (fresh->version.empty()) return reject(Status::Corruption("model has an empty version"));
  fresh->version_json = nlohmann::json(fresh->version).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  fresh->tag = serve::ModelTag(fresh->version);
  try {
    fresh->metadata = next->Metadata();
    fresh->input = options.encoder->DescribeInput(*next);
  } catch (const std::exception& e) {
    return reject(Status::Corruption(std::string("model metadata failed: ") + e.what()));
  }
  fresh->loaded_at = std::chrono::system_clock::now();
  {
    std::lock_guard lock(model_mu);
    model = fresh;  // requests that copied the old pointer finish on the old model
  }
  // Old entries are unreachable already (keys carry the model tag); free them.
  if (!current || current->tag != fresh->tag) cache.Clear();
  reloads_ok.fetch_add(1);
  const auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started_at).count();
  Log(fmt::format("serving model {} version {} (loaded in {:.1f} ms)", options.model_path, fresh->version, ms));
  return Status::Ok();
}

void Server::Impl::ReloadLoop() {
  first_load.set_value(LoadNow());
  const bool polling = options.poll_interval.count() > 0;
  std::unique_lock lock(loop_mu);
  while (true) {
    auto wake = [&] { return stopping || reload_requested; };
    if (polling) loop_cv.wait_for(lock, options.poll_interval, wake);
    else loop_cv.wait(lock, wake);
    if (stopping) return;
    const bool requested = std::exchange(reload_requested, false);
    lock.unlock();
    if (requested) {
      (void)LoadNow();
    } else if (polling) {
      FileStamp now = StatFile(options.model_path);
      bool changed;
      {
        std::lock_guard reload_lock(reload_mu);
        changed = now.exists && !(now == last_stamp);
      }
      if (changed) {
        Log(fmt::format("model file {} changed; reloading", options.model_path));
        (void)LoadNow();
      }
    }
    lock.lock();
  }
}

// ----------------------------------------------------------------- handlers

// Counts a handled response before it is sent, so a client that reads
// /metrics right after its answer always sees it counted.
void Server::Impl::Respond(serve::HttpExchange& x, Endpoint e, TimePoint start) {
  metrics.ObserveLatency(e, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  metrics.CountResponse(e, x.status);
  x.Finish();
}

void Server::Impl::Handle(serve::HttpExchange& x) {
  const TimePoint start = std::chrono::steady_clock::now();
  const std::string_view path = x.target.substr(0, x.target.find('?'));
  const Endpoint e = serve::EndpointFor(path);
  if (x.rejected) {  // refused by the HTTP layer: counted, not timed
    std::string message = fmt::format("HTTP status {}", x.status);
    if (x.status == 413) message = fmt::format("request body larger than {} bytes (--max-body)", options.max_body_bytes);
    if (x.status == 400) message = "malformed HTTP request";
    x.response_body = JsonError(message);
    metrics.CountResponse(e, x.status);
    return x.Finish();
  }
  const bool get = x.method == "GET", post = x.method == "POST";
  auto answer = [&](std::string_view body) {
    x.response_body.assign(body);
    Respond(x, e, start);
  };
  switch (e) {
    case Endpoint::kHealthz:
      if (get) return answer("{\"status\":\"ok\"}");
      break;
    case Endpoint::kReadyz:
      if (get) {
        auto model = Current();
        if (!model) {
          x.status = 503;
          return answer("{\"status\":\"loading\"}");
        }
        return answer("{\"status\":\"ready\",\"model_version\":" + model->version_json + "}");
      }
      break;
    case Endpoint::kModel:
      if (get) {
        HandleModel(x);
        return Respond(x, e, start);
      }
      break;
    case Endpoint::kMetrics:
      if (get) {
        HandleMetrics(x);
        return Respond(x, e, start);
      }
      break;
    case Endpoint::kTfPredict:  // TensorFlow Serving's REST shape; one model is served, so any NAME answers
      if (post && path.size() > std::string_view("/v1/models/:predict").size() &&
          path.substr(11, path.size() - 11 - 8).find('/') == std::string_view::npos) {
        return HandlePredict(x, e, start);
      }
      break;
    case Endpoint::kPredict:
      if (post) return HandlePredict(x, e, start);
      break;
    case Endpoint::kReload:
      if (post) {
        // Loading a model file takes a while: not on an I/O thread.
        return pool.Post([this, &x, e, start] {
          HandleReload(x);
          Respond(x, e, start);
        });
      }
      break;
    default:
      break;
  }
  x.status = 404;
  x.response_body = JsonError("no such endpoint");
  metrics.CountResponse(e, 404);
  x.Finish();
}

void Server::Impl::HandleReload(serve::HttpExchange& x) {
  Status st = LoadNow();
  if (!st.ok()) {
    auto model = Current();
    x.status = 422;
    x.response_body = JsonError("reload rejected: " + st.message() +
                                (model ? "; still serving version " + model->version : std::string()));
    return;
  }
  x.response_body = "{\"reloaded\":true,\"model_version\":" + Current()->version_json + "}";
}

// Parse, encode and look up on the I/O thread; answers from the cache go back
// at once. Cache misses go to the batcher (or, a batch already, straight to
// the model on a pool thread) and the I/O thread moves on; the answer is
// written back on it (CompleteMisses).
void Server::Impl::HandlePredict(serve::HttpExchange& x, Endpoint e, TimePoint start) {
  auto fail = [&](int status, std::string body) {
    x.status = status;
    x.response_body = std::move(body);
    Respond(x, e, start);
  };
  auto model = Current();
  if (!model) return fail(503, JsonError("no model loaded yet"));

  if (!x.state) {
    auto scratch = std::make_unique<PredictScratch>();
    scratch->complete = [this, &s = *scratch] { CompleteMisses(s); };
    x.state = std::move(scratch);
  }
  PredictScratch& s = static_cast<PredictScratch&>(*x.state);
  int64_t decoded = DecodeTokenRequest(x.body, *model, s);
  if (decoded < 0) {  // the general path: named columns, and every error message
    nlohmann::json body;
    try {
      body = nlohmann::json::parse(x.body.begin(), x.body.end());
    } catch (const nlohmann::json::parse_error& err) {
      return fail(400, JsonError(fmt::format("malformed JSON at byte {}", err.byte)));
    }
    if (!body.is_object()) {
      return fail(400, JsonError("request body must be a JSON object with an \"instances\" array"));
    }
    auto it = body.find("instances");
    if (it == body.end() || !it->is_array()) {
      return fail(400, JsonError("request body needs an \"instances\" array"));
    }
    const nlohmann::json& instances = *it;
    const size_t count = instances.size();
    if (count > options.max_instances) {
      return fail(413, JsonError(fmt::format("{} instances in one request; the limit is {} (--max-instances)", count,
                                             options.max_instances)));
    }
    s.Reset(count);
    const Predictor& predictor = *model->predictor;
    std::string bad_field;
    for (size_t i = 0; i < count; ++i) {
      const nlohmann::json& instance = instances[i];
      if (!instance.is_object() && !instance.is_string()) {
        return fail(400, JsonError(fmt::format("instance {}: expected an object of named columns or a token "
                                               "string, got {}", i, JsonTypeName(instance)),
                                   int64_t(i)));
      }
      s.features.clear();
      size_t ignored_here = 0;
      Status st = options.encoder->Encode(predictor, instance, &s.features, &ignored_here, &bad_field);
      if (!st.ok()) {
        return fail(400, JsonError(fmt::format("instance {}: {}", i, st.message()), int64_t(i), bad_field));
      }
      s.ignored += ignored_here;
      LookUp(s, *model, i);
    }
    decoded = int64_t(count);
  }
  const size_t n = size_t(decoded);
  s.model = std::move(model);
  if (s.misses.empty()) {
    FinishPredict(x, s, n);
    return Respond(x, e, start);
  }
  s.exchange = &x;
  s.endpoint = e;
  s.start = start;
  s.instances = n;
  s.miss_predictions.resize(s.misses.rows());
  s.predictor = s.model->predictor.get();  // s.model keeps it alive until answered
  s.rows = &s.misses;
  s.out = s.miss_predictions;
  if (s.misses.rows() < options.max_batch) return batcher.Submit(&s);
  // A batch already: straight to the model, past the queue of small ones.
  pool.Post([this, &s] { s.Done(batcher.PredictNow(*s.predictor, s.misses.view(), s.miss_predictions)); });
}

// Back on the I/O thread with the model's answers for the misses of s.
void Server::Impl::CompleteMisses(PredictScratch& s) {
  serve::HttpExchange& x = *s.exchange;
  s.exchange = nullptr;
  if (!s.status.ok()) {
    Log(s.status.message());
    s.model.reset();
    x.status = 500;
    x.response_body = JsonError(s.status.message());
    return Respond(x, s.endpoint, s.start);
  }
  for (size_t j = 0; j < s.miss_positions.size(); ++j) {
    const size_t i = s.miss_positions[j];
    s.predictions[i] = s.miss_predictions[j];
    if (cache.enabled()) cache.Insert(s.keys[i], s.model->tag, s.miss_predictions[j]);
  }
  FinishPredict(x, s, s.instances);
  Respond(x, s.endpoint, s.start);
}

// The fast path for the usual request, {"instances": [token strings]}:
// simdjson, and tokens go to the encoder without a JSON value in between.
// Returns the instance count, or -1 when the request needs the general path
// (named columns, or anything wrong: the error messages come from there).
int64_t Server::Impl::DecodeTokenRequest(std::string_view body, const LoadedModel& model, PredictScratch& s) {
  thread_local simdjson::dom::parser parser;  // HandlePredict runs on the I/O threads
  struct ShrinkAfterBigBodies {  // one huge request must not pin parser memory
    ~ShrinkAfterBigBodies() {
      if (parser.capacity() > (1u << 20)) parser = simdjson::dom::parser();
    }
  } shrink;
  simdjson::dom::element root;
  if (parser.parse(body.data(), body.size(), false).get(root)) return -1;
  simdjson::dom::array instances;
  if (root["instances"].get_array().get(instances)) return -1;
  const size_t n = instances.size();
  if (n > options.max_instances) return -1;
  s.Reset(n);
  size_t i = 0;
  std::string bad_field;
  for (simdjson::dom::element instance : instances) {
    std::string_view tokens;
    if (instance.get_string().get(tokens)) return -1;
    s.features.clear();
    size_t ignored_here = 0;
    if (!options.encoder->EncodeTokens(*model.predictor, tokens, &s.features, &ignored_here, &bad_field).ok()) {
      return -1;
    }
    s.ignored += ignored_here;
    LookUp(s, model, i++);
  }
  return int64_t(n);
}

// Answers instance i from the cache, or queues it for the model.
void Server::Impl::LookUp(PredictScratch& s, const LoadedModel& model, size_t i) {
  if (cache.enabled()) {
    const uint64_t key = serve::CacheKey(serve::CanonicalInstanceHash(s.features, &s.sorted), model.tag);
    if (cache.Lookup(key, model.tag, &s.predictions[i])) return;
    s.keys[i] = key;
  }
  s.misses.add(0.0f, 1.0f, s.features);
  s.miss_positions.push_back(i);
}

// Writes the answer of a request whose predictions are all in s.predictions.
void Server::Impl::FinishPredict(serve::HttpExchange& x, PredictScratch& s, size_t n) {
  instances_answered.fetch_add(n, std::memory_order_relaxed);
  ignored_fields.fetch_add(s.ignored, std::memory_order_relaxed);
  // Written by hand: this is the hot path, and fmt prints the shortest
  // representation that reads back as the same float.
  std::string& out = x.response_body;
  out.clear();
  auto it = std::back_inserter(out);
  out += "{\"predictions\":[";
  for (size_t i = 0; i < n; ++i) {
    if (i) out += ',';
    if (std::isfinite(s.predictions[i])) fmt::format_to(it, "{}", s.predictions[i]);
    else out += "null";  // JSON has no NaN
  }
  fmt::format_to(it, "],\"model_version\":{},\"ignored_fields\":{}}}", s.model->version_json, s.ignored);
  x.status = 200;
  s.model.reset();  // an idle connection must not keep an old model alive
  // One huge request must not pin its memory in this connection forever.
  if (s.misses.features.capacity() > (1u << 20)) {
    auto complete = std::move(s.complete);
    s = PredictScratch();
    s.complete = std::move(complete);
  }
}

void Server::Impl::HandleModel(serve::HttpExchange& x) const {
  auto model = Current();
  if (!model) {
    x.status = 503;
    x.response_body = JsonError("no model loaded yet");
    return;
  }
  nlohmann::json j;
  j["model_version"] = model->version;
  j["model_path"] = options.model_path;
  const auto loaded = std::chrono::floor<std::chrono::milliseconds>(model->loaded_at);
  j["loaded_at"] = fmt::format("{:%Y-%m-%dT%H:%M:%S}Z", loaded);
  j["loaded_at_unix"] = std::chrono::duration<double>(loaded.time_since_epoch()).count();
  j["metadata"] = model->metadata;
  if (!model->input.is_null()) j["input"] = model->input;
  for (const char* key : {"model_type", "type", "fields", "num_fields", "field_names"}) {
    if (model->metadata.is_object() && model->metadata.contains(key)) j[key] = model->metadata[key];
  }
  x.response_body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void Server::Impl::HandleMetrics(serve::HttpExchange& x) const {
  std::string& out = x.response_body;
  out.clear();
  metrics.Render(&out);
  const serve::CacheStats c = cache.stats();
  serve::AppendMetric(&out, "fieldfm_cache_hits_total", "counter", "Instances answered from the cache.", double(c.hits));
  serve::AppendMetric(&out, "fieldfm_cache_misses_total", "counter", "Instances sent to the model.", double(c.misses));
  serve::AppendMetric(&out, "fieldfm_cache_evictions_total", "counter", "Entries dropped to make room (LRU).",
                      double(c.evictions));
  serve::AppendMetric(&out, "fieldfm_cache_expirations_total", "counter", "Entries found past their TTL.",
                      double(c.expirations));
  serve::AppendMetric(&out, "fieldfm_cache_entries", "gauge", "Entries in the cache.", double(c.entries));
  serve::AppendMetric(&out, "fieldfm_cache_capacity", "gauge", "Cache bound (--cache-entries).",
                      double(options.cache_entries));
  const serve::MicroBatcher::Stats b = batcher.stats();
  serve::AppendMetric(&out, "fieldfm_predict_calls_total", "counter", "Batched Predict calls on the model.",
                      double(b.predict_calls));
  serve::AppendMetric(&out, "fieldfm_predict_rows_total", "counter", "Rows scored by the model.", double(b.rows));
  serve::AppendMetric(&out, "fieldfm_instances_total", "counter", "Instances answered (hits and misses).",
                      double(instances_answered.load()));
  serve::AppendMetric(&out, "fieldfm_ignored_fields_total", "counter", "Unknown input fields ignored.",
                      double(ignored_fields.load()));
  serve::AppendMetric(&out, "fieldfm_model_reloads_total", "counter", "Model loads by result.", double(reloads_ok.load()),
                      "result=\"ok\"");
  out += fmt::format("fieldfm_model_reloads_total{{result=\"rejected\"}} {}\n", reloads_failed.load());
  if (auto model = Current()) {
    serve::AppendMetric(&out, "fieldfm_model_info", "gauge", "The model being served.", 1.0,
                        "version=\"" + serve::EscapeLabel(model->version) + "\"");
    serve::AppendMetric(&out, "fieldfm_model_load_timestamp_seconds", "gauge", "When the served model was loaded.",
                        std::chrono::duration<double>(model->loaded_at.time_since_epoch()).count());
  }
  x.content_type = "text/plain; version=0.0.4";
}

// ------------------------------------------------------------------ Server

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() { Stop(); }

Result<std::unique_ptr<Server>> Server::Create(ServeOptions options) {
  if (options.model_path.empty()) return Status::InvalidArgument("serve: --model is required");
  if (!options.loader) return Status::InvalidArgument("serve: no model loader");
  if (!options.encoder) return Status::InvalidArgument("serve: no instance encoder");
  if (options.port < 0 || options.port > 65535) {
    return Status::InvalidArgument(fmt::format("serve: bad port (token '{}')", options.port));
  }
  if (options.threads < 1) return Status::InvalidArgument(fmt::format("serve: --threads must be >= 1 (token '{}')", options.threads));
  if (options.io_threads < 0) return Status::InvalidArgument("serve: --io-threads must be >= 0");
  if (options.predict_slots < 0) return Status::InvalidArgument("serve: --predict-slots must be >= 0");
  if (options.max_batch < 1) return Status::InvalidArgument("serve: --max-batch must be >= 1");
  if (options.max_body_bytes < 1) return Status::InvalidArgument("serve: --max-body must be >= 1");
  return std::unique_ptr<Server>(new Server(std::make_unique<Impl>(std::move(options))));
}

Status Server::Start() {
  Impl& s = *impl_;
  {
    std::lock_guard lock(s.stop_mu);
    if (s.started) return Status::InvalidArgument("serve: already started");
    s.started = true;
  }
  const ServeOptions& o = s.options;
  if (!IsLoopbackHost(o.host)) {
    s.Log(fmt::format("WARNING: listening on non-loopback address {}; the API has no authentication", o.host));
  }
  const int io_threads = o.io_threads > 0 ? o.io_threads : int(std::max(1u, std::thread::hardware_concurrency()));
  serve::HttpServerOptions h;
  h.host = o.host;
  h.port = o.port;
  h.io_threads = io_threads;
  h.max_body_bytes = o.max_body_bytes;
  h.read_timeout = o.read_timeout;
  h.write_timeout = o.write_timeout;
  h.keep_alive_timeout = o.keep_alive_timeout;
  h.handler = [&s](serve::HttpExchange& x) { s.Handle(x); };
  h.log = [&s](const std::string& line) { s.Log(line); };
  s.http = std::make_unique<serve::HttpServer>(std::move(h));
  s.pool.Start(o.threads);
  s.batcher.Start();
  Status listening = s.http->Start();
  if (!listening.ok()) {
    s.batcher.Stop();
    s.pool.Stop();
    std::lock_guard lock(s.stop_mu);
    s.stopped = true;
    s.stopped_cv.notify_all();
    return Status::IOError("serve: " + listening.message());
  }
  s.bound_port = s.http->port();
  s.reload_thread = std::thread([&s] { s.ReloadLoop(); });
  s.Log(fmt::format("listening on {}:{} ({} I/O threads, {} predict threads, {} pool threads, cache {} entries, ttl {} ms)",
                    o.host, s.bound_port, io_threads, PredictThreads(o), o.threads, o.cache_entries,
                    o.cache_ttl.count()));
  return Status::Ok();
}

Status Server::WaitForFirstModel() {
  {
    std::lock_guard lock(impl_->stop_mu);
    if (!impl_->started || !impl_->reload_thread.joinable()) return Status::InvalidArgument("serve: not started");
  }
  return impl_->first_load_done.get();
}

void Server::Stop() {
  Impl& s = *impl_;
  {
    std::unique_lock lock(s.stop_mu);
    if (s.stop_begun || s.stopped) {  // another thread is stopping: wait for it
      s.stopped_cv.wait(lock, [&] { return s.stopped; });
      return;
    }
    s.stop_begun = true;
    if (!s.started) {
      s.stopped = true;
      s.stopped_cv.notify_all();
      return;
    }
  }
  s.Log("stopping: draining in-flight requests");
  s.http->Stop();  // closes the listener and idle connections; requests in progress get their answers
  s.batcher.Stop();
  s.pool.Stop();
  {
    std::lock_guard lock(s.loop_mu);
    s.stopping = true;
  }
  s.loop_cv.notify_all();
  if (s.reload_thread.joinable()) s.reload_thread.join();
  std::lock_guard lock(s.stop_mu);
  s.stopped = true;
  s.stopped_cv.notify_all();
  s.Log("stopped");
}

void Server::Wait() {
  std::unique_lock lock(impl_->stop_mu);
  impl_->stopped_cv.wait(lock, [&] { return impl_->stopped; });
}

Status Server::Reload() { return impl_->LoadNow(); }

void Server::RequestReload() {
  {
    std::lock_guard lock(impl_->loop_mu);
    impl_->reload_requested = true;
  }
  impl_->loop_cv.notify_all();
}

int Server::port() const { return impl_->bound_port; }
bool Server::ready() const { return impl_->Current() != nullptr; }
std::string Server::model_version() const {
  auto m = impl_->Current();
  return m ? m->version : std::string();
}

}  // namespace fieldfm
