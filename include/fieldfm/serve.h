// `fieldfm serve`: an HTTP/1.1 JSON prediction server in front of one
// Predictor, with a per-instance LRU+TTL cache, micro-batching of cache misses
// and hot reload of the model file.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fieldfm/example.h"
#include "fieldfm/predictor.h"
#include "fieldfm/status.h"

namespace fieldfm {

// Loads a model file. The default (DefaultModelLoader) calls LoadPredictor;
// tests inject their own so they never need a trained model.
using ModelLoader = std::function<Result<std::shared_ptr<const Predictor>>(const std::string& path)>;

// Monotonic time source; injectable so cache expiry is testable without sleeping.
using SteadyClock = std::function<std::chrono::steady_clock::time_point()>;

// Turns one request instance into features. `instance` is a JSON object of
// named columns or a JSON string of libffm/libsvm tokens (the server rejects
// every other JSON type itself). On error, set *bad_field when the offending
// field is known; the message should name it anyway.
class InstanceEncoder {
 public:
  virtual ~InstanceEncoder() = default;
  virtual Status Encode(const Predictor& model, const nlohmann::json& instance, std::vector<Feature>* out,
                        size_t* ignored_fields, std::string* bad_field) const = 0;
  // The same for an instance that is a token string (the server's fast path
  // hands it over without building a JSON value); the default wraps Encode.
  virtual Status EncodeTokens(const Predictor& model, std::string_view tokens, std::vector<Feature>* out,
                              size_t* ignored_fields, std::string* bad_field) const {
    return Encode(model, nlohmann::json(tokens), out, ignored_fields, bad_field);
  }
  // Called before a reloaded model replaces `current`; an error keeps `current`.
  virtual Status CheckCompatible(const Predictor& current, const Predictor& next) const { return Status::Ok(); }
  // What clients must send (format, field names), shown by GET /v1/model as "input".
  virtual nlohmann::json DescribeInput(const Predictor& model) const { return nullptr; }
};

struct ServeOptions {
  std::string model_path;
  std::string host = "127.0.0.1";  // loopback unless told otherwise
  int port = 8080;                 // 0 = any free port (see Server::port())
  int io_threads = 0;              // event loops serving the connections; 0 = cores
  int threads = 16;                // reloads and requests of max_batch rows or more
  size_t cache_entries = 100000;   // 0 disables the cache
  std::chrono::milliseconds cache_ttl{60000};  // 0 = entries never expire
  size_t max_batch = 256;          // rows per batched Predict call
  std::chrono::microseconds max_batch_wait{1000};
  int predict_slots = 0;           // predict threads batching the cache misses; 0 = cores
  size_t max_body_bytes = 8u << 20;
  size_t max_instances = 10000;
  std::chrono::milliseconds poll_interval{2000};  // model file change polling; 0 = off
  std::chrono::milliseconds read_timeout{5000};
  std::chrono::milliseconds write_timeout{5000};
  std::chrono::milliseconds keep_alive_timeout{5000};

  ModelLoader loader;                               // required
  std::shared_ptr<const InstanceEncoder> encoder;   // required
  SteadyClock clock;                                // empty = std::chrono::steady_clock::now
  std::function<void(const std::string&)> log;      // empty = stderr with a timestamp
};

class Server {
 public:
  // Checks the options; binds nothing yet.
  static Result<std::unique_ptr<Server>> Create(ServeOptions options);
  ~Server();  // Stop()s
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds host:port and serves from background threads; the first model
  // loads in the background too (/readyz answers 503 until it is in).
  Status Start();
  // Blocks until the first load attempt finished; its status.
  Status WaitForFirstModel();
  // Blocks until Stop() has finished (from any thread).
  void Wait();
  // Stops accepting, lets in-flight requests finish, joins every thread.
  // Idempotent; safe from any thread except an HTTP handler.
  void Stop();

  // Loads the model file again now and swaps it in when good; the old model
  // keeps serving otherwise. Returns the load/check error, if any.
  Status Reload();
  // Asks the background reloader to Reload() soon (e.g. from a SIGHUP thread).
  void RequestReload();

  int port() const;           // the bound port (after Start)
  bool ready() const;         // a model is loaded
  std::string model_version() const;  // "" before the first model

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// "250ms", "2s", "1m", "1h", or a bare number of seconds.
Result<std::chrono::milliseconds> ParseDuration(std::string_view text);

// True for 127.0.0.0/8, ::1 and "localhost".
bool IsLoopbackHost(std::string_view host);

// Defaults used by the CLI. They live in their own objects (default_*.cpp), so
// linking the server never drags in the data and model modules unless used.
ModelLoader DefaultModelLoader();                                 // LoadPredictor
std::shared_ptr<const InstanceEncoder> DefaultInstanceEncoder();  // pipeline().EncodeJson/EncodeTokens

}  // namespace fieldfm
