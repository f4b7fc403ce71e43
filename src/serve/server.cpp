// The HTTP front end: routes, request decoding, cache + batcher plumbing, and
// the background reloader that swaps models atomically.
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <httplib.h>
#include <sys/stat.h>

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <future>
#include <mutex>
#include <thread>

#include "fieldfm/serve.h"
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

// Per-thread buffers, so a request allocates (almost) nothing after warm-up.
struct Scratch {
  std::vector<Feature> features, sorted;
  ExampleBlock misses;
  std::vector<size_t> miss_positions;
  std::vector<uint64_t> keys;
  std::vector<float> predictions, miss_predictions;
  std::string body;
};

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
  httplib::Server http;
  int bound_port = 0;
  std::thread listen_thread, reload_thread;

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
  std::atomic<bool> listen_exited{false};

  explicit Impl(ServeOptions opts)
      : options(std::move(opts)),
        cache(options.cache_entries, options.cache_ttl, options.clock),
        batcher({options.max_batch, options.max_batch_wait,
                 options.predict_slots > 0 ? options.predict_slots
                                           : int(std::max(1u, std::thread::hardware_concurrency()))}) {
    if (!options.log) options.log = DefaultLog;
  }

  std::shared_ptr<const LoadedModel> Current() const {
    std::lock_guard lock(model_mu);
    return model;
  }

  void Log(const std::string& line) const { options.log(line); }

  Status LoadNow();
  void ReloadLoop();
  void Routes();
  void Observe(Endpoint e, std::chrono::steady_clock::time_point start, const httplib::Response& res);
  void HandlePredict(const std::string& request_body, httplib::Response& res);
  void ReadAndPredict(httplib::Response& res, const httplib::ContentReader& reader);
  void HandleModel(httplib::Response& res) const;
  void HandleMetrics(httplib::Response& res) const;
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

// Predict bodies are read through a content reader: httplib then skips its
// own body handling, which would cap bodies sent as curl's default
// application/x-www-form-urlencoded at 8 KiB. --max-body still applies (413).
void Server::Impl::ReadAndPredict(httplib::Response& res, const httplib::ContentReader& reader) {
  thread_local std::string body;
  body.clear();
  const bool complete = reader([&](const char* data, size_t n) {
    body.append(data, n);
    return true;
  });
  if (!complete) {
    if (res.status < 400) res.status = 400;  // httplib sets 413 when over --max-body
    return;
  }
  HandlePredict(body, res);
  if (body.capacity() > (8u << 20)) std::string().swap(body);
}

void Server::Impl::HandlePredict(const std::string& request_body, httplib::Response& res) {
  constexpr const char* kJson = "application/json";
  auto fail = [&](int status, const std::string& body) {
    res.status = status;
    res.set_content(body, kJson);
  };
  auto model = Current();
  if (!model) return fail(503, JsonError("no model loaded yet"));

  nlohmann::json body;
  try {
    body = nlohmann::json::parse(request_body);
  } catch (const nlohmann::json::parse_error& e) {
    return fail(400, JsonError(fmt::format("malformed JSON at byte {}", e.byte)));
  }
  if (!body.is_object()) return fail(400, JsonError("request body must be a JSON object with an \"instances\" array"));
  auto it = body.find("instances");
  if (it == body.end() || !it->is_array()) {
    return fail(400, JsonError("request body needs an \"instances\" array"));
  }
  const nlohmann::json& instances = *it;
  const size_t n = instances.size();
  if (n > options.max_instances) {
    return fail(413, JsonError(fmt::format("{} instances in one request; the limit is {} (--max-instances)", n,
                                           options.max_instances)));
  }

  thread_local Scratch s;
  s.misses.clear();
  s.miss_positions.clear();
  s.keys.assign(n, 0);
  s.predictions.assign(n, 0.0f);
  size_t ignored = 0;
  const Predictor& predictor = *model->predictor;
  for (size_t i = 0; i < n; ++i) {
    const nlohmann::json& instance = instances[i];
    if (!instance.is_object() && !instance.is_string()) {
      return fail(400, JsonError(fmt::format("instance {}: expected an object of named columns or a token "
                                             "string, got {}", i, JsonTypeName(instance)),
                                 int64_t(i)));
    }
    s.features.clear();
    size_t ignored_here = 0;
    std::string bad_field;
    Status st = options.encoder->Encode(predictor, instance, &s.features, &ignored_here, &bad_field);
    if (!st.ok()) {
      return fail(400, JsonError(fmt::format("instance {}: {}", i, st.message()), int64_t(i), bad_field));
    }
    ignored += ignored_here;
    if (cache.enabled()) {
      const uint64_t key = serve::CacheKey(serve::CanonicalInstanceHash(s.features, &s.sorted), model->tag);
      if (cache.Lookup(key, model->tag, &s.predictions[i])) continue;
      s.keys[i] = key;
    }
    s.misses.add(0.0f, 1.0f, s.features);
    s.miss_positions.push_back(i);
  }
  if (!s.misses.empty()) {
    s.miss_predictions.resize(s.misses.rows());
    Status st = batcher.Predict(model->predictor, s.misses, s.miss_predictions);
    if (!st.ok()) {
      Log(st.message());
      return fail(500, JsonError(st.message()));
    }
    for (size_t j = 0; j < s.miss_positions.size(); ++j) {
      const size_t i = s.miss_positions[j];
      s.predictions[i] = s.miss_predictions[j];
      if (cache.enabled()) cache.Insert(s.keys[i], model->tag, s.miss_predictions[j]);
    }
  }
  instances_answered.fetch_add(n, std::memory_order_relaxed);
  ignored_fields.fetch_add(ignored, std::memory_order_relaxed);

  // Written by hand: this is the hot path, and fmt prints the shortest
  // representation that reads back as the same float.
  s.body.clear();
  auto out = std::back_inserter(s.body);
  s.body += "{\"predictions\":[";
  for (size_t i = 0; i < n; ++i) {
    if (i) s.body += ',';
    if (std::isfinite(s.predictions[i])) fmt::format_to(out, "{}", s.predictions[i]);
    else s.body += "null";  // JSON has no NaN
  }
  fmt::format_to(out, "],\"model_version\":{},\"ignored_fields\":{}}}", model->version_json, ignored);
  res.status = 200;
  res.set_content(s.body, kJson);
  // One huge request must not pin its memory in this worker forever.
  if (s.misses.features.capacity() > (1u << 20)) s = Scratch();
}

void Server::Impl::HandleModel(httplib::Response& res) const {
  auto model = Current();
  if (!model) {
    res.status = 503;
    res.set_content(JsonError("no model loaded yet"), "application/json");
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
  res.set_content(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/json");
}

void Server::Impl::HandleMetrics(httplib::Response& res) const {
  std::string out;
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
  res.set_content(out, "text/plain; version=0.0.4");
}

// Set when a handler counted its own response, so the logger (same thread,
// right after the response is written) does not count it again.
thread_local bool t_counted_by_handler = false;

// Counts a handled response before it is sent, so a client that reads
// /metrics right after its answer always sees it counted.
void Server::Impl::Observe(Endpoint e, std::chrono::steady_clock::time_point start, const httplib::Response& res) {
  metrics.ObserveLatency(e, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  metrics.CountResponse(e, res.status == -1 ? 200 : res.status);
  t_counted_by_handler = true;
}

void Server::Impl::Routes() {
  using httplib::Request;
  using httplib::Response;
  // Times a handler into the latency histogram of its endpoint.
  auto timed = [this](Endpoint e, auto handler) {
    return [this, e, handler](const Request& req, Response& res) {
      const auto t0 = std::chrono::steady_clock::now();
      handler(req, res);
      Observe(e, t0, res);
    };
  };
  http.Get("/healthz", timed(Endpoint::kHealthz, [](const Request&, Response& res) {
    res.set_content("{\"status\":\"ok\"}", "application/json");
  }));
  http.Get("/readyz", timed(Endpoint::kReadyz, [this](const Request&, Response& res) {
    auto model = Current();
    if (!model) {
      res.status = 503;
      res.set_content("{\"status\":\"loading\"}", "application/json");
      return;
    }
    res.set_content("{\"status\":\"ready\",\"model_version\":" + model->version_json + "}", "application/json");
  }));
  http.Get("/v1/model", timed(Endpoint::kModel, [this](const Request&, Response& res) { HandleModel(res); }));
  http.Get("/metrics", timed(Endpoint::kMetrics, [this](const Request&, Response& res) { HandleMetrics(res); }));
  // Same timing as `timed`, for handlers that read the body themselves.
  auto timed_reader = [this](Endpoint e) {
    return [this, e](const Request&, Response& res, const httplib::ContentReader& reader) {
      const auto t0 = std::chrono::steady_clock::now();
      ReadAndPredict(res, reader);
      Observe(e, t0, res);
    };
  };
  http.Post("/v1/predict", timed_reader(Endpoint::kPredict));
  // TensorFlow Serving's REST shape; one model is served, so any NAME answers.
  http.Post(R"(/v1/models/([^/]+):predict)", timed_reader(Endpoint::kTfPredict));
  http.Post("/v1/reload", timed(Endpoint::kReload, [this](const Request&, Response& res) {
    Status st = LoadNow();
    if (!st.ok()) {
      auto model = Current();
      res.status = 422;
      res.set_content(JsonError("reload rejected: " + st.message() +
                                (model ? "; still serving version " + model->version : std::string())),
                      "application/json");
      return;
    }
    res.set_content("{\"reloaded\":true,\"model_version\":" + Current()->version_json + "}", "application/json");
  }));

  // Responses httplib produced without a handler (404, 413 before routing,
  // bad HTTP) are counted here, after they were sent.
  http.set_logger([this](const Request& req, const Response& res) {
    if (std::exchange(t_counted_by_handler, false)) return;
    metrics.CountResponse(serve::EndpointFor(req.path), res.status);
  });
  // Bodies for errors httplib answers itself (404, 413, 400 on bad HTTP).
  http.set_error_handler(httplib::Server::HandlerWithResponse([this](const Request&, Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string message = fmt::format("HTTP status {}", res.status);
    if (res.status == 413) message = fmt::format("request body larger than {} bytes (--max-body)", options.max_body_bytes);
    if (res.status == 404) message = "no such endpoint";
    res.set_content(JsonError(message), "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }));
  http.set_exception_handler([this](const Request& req, Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    Log(fmt::format("internal error on {} {}: {}", req.method, req.path, what));
    res.status = 500;
    res.set_content(JsonError("internal error"), "application/json");
  });
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
  const size_t threads = size_t(o.threads);
  s.http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s.http.set_keep_alive_max_count(1000000);
  s.http.set_keep_alive_timeout(std::max<time_t>(1, (o.keep_alive_timeout.count() + 999) / 1000));
  s.http.set_read_timeout(o.read_timeout);
  s.http.set_write_timeout(o.write_timeout);
  s.http.set_payload_max_length(o.max_body_bytes);
  s.http.set_tcp_nodelay(true);
  // httplib also sets SO_REUSEPORT, which lets a second server silently share
  // the port; only SO_REUSEADDR (fast restarts) is wanted.
  s.http.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  s.Routes();

  if (!IsLoopbackHost(o.host)) {
    s.Log(fmt::format("WARNING: listening on non-loopback address {}; the API has no authentication", o.host));
  }
  if (o.port == 0) {
    s.bound_port = s.http.bind_to_any_port(o.host);
    if (s.bound_port < 0) s.bound_port = 0;
  } else if (s.http.bind_to_port(o.host, o.port)) {
    s.bound_port = o.port;
  }
  if (s.bound_port <= 0) {
    std::lock_guard lock(s.stop_mu);
    s.stopped = true;
    s.stopped_cv.notify_all();
    return Status::IOError(fmt::format("serve: cannot listen on {}:{}", o.host, o.port));
  }
  s.listen_thread = std::thread([&s] {
    s.http.listen_after_bind();
    s.listen_exited = true;
  });
  // stop() is a no-op until the accept loop runs, so wait for it.
  while (!s.http.is_running() && !s.listen_exited) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  s.reload_thread = std::thread([&s] { s.ReloadLoop(); });
  s.Log(fmt::format("listening on {}:{} ({} threads, cache {} entries, ttl {} ms)", o.host, s.bound_port, o.threads,
                    o.cache_entries, o.cache_ttl.count()));
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
  s.http.stop();  // closes the listener; workers finish their requests, then join
  if (s.listen_thread.joinable()) s.listen_thread.join();
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
