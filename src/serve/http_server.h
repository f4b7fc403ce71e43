// The HTTP/1.1 front end of `fieldfm serve`: Boost.Asio with one io_context
// per I/O thread and asynchronous keep-alive connections, Boost.Beast's
// parser for requests. Chosen by measurement over cpp-httplib, whose thread
// per connection cost two wake-ups and ~11 system calls per request (see
// docs/serve.md). Boost stays out of this header.
//
// A request is handed to the application as an HttpExchange; the handler
// fills the response and calls Finish() exactly once, on the I/O thread
// (answers from memory) or later from any other thread (model calls), so
// I/O threads never block on the model. Post() brings work back to the
// exchange's I/O thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "fieldfm/status.h"

namespace fieldfm::serve {

// State an application keeps per connection (reused by its requests).
class ConnectionState {
 public:
  virtual ~ConnectionState() = default;
};

class HttpExchange {
 public:
  // The request. `rejected` is non-zero when the HTTP layer refused it already
  // (400 bad HTTP, 413 body over the limit, 431 header too large): the handler
  // only writes the error body. Views are valid until Finish(); at least
  // kBodyPadding readable bytes follow `body` (simdjson reads in blocks).
  static constexpr size_t kBodyPadding = 64;
  std::string_view method;
  std::string_view target;  // path and query, as sent
  std::string_view body;
  int rejected = 0;

  // The answer.
  int status = 200;
  std::string_view content_type = "application/json";
  std::string response_body;

  // Per-connection application state, created on first use by the handler.
  std::unique_ptr<ConnectionState> state;

  // Sends the response; exactly once per request, from any thread.
  virtual void Finish() = 0;
  // Runs `task` on this connection's I/O thread, later (asio::post): work
  // that finishes a request handed off the I/O thread comes back this way.
  virtual void Post(std::function<void()> task) = 0;

 protected:
  ~HttpExchange() = default;
};

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0 = any free port
  int io_threads = 1;
  size_t max_body_bytes = 8u << 20;
  std::chrono::milliseconds read_timeout{5000};        // header and body of one request
  std::chrono::milliseconds write_timeout{5000};
  std::chrono::milliseconds keep_alive_timeout{5000};  // idle between requests
  std::function<void(HttpExchange&)> handler;
  std::function<void(const std::string&)> log;
};

class HttpServer {
 public:
  explicit HttpServer(HttpServerOptions options);
  ~HttpServer();  // Stop()s
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts the I/O threads; IOError when the address is taken.
  Status Start();
  int port() const;
  // Closes the listener and idle connections, lets requests in progress get
  // their answers (then closes their connections), and joins the I/O threads.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fieldfm::serve
