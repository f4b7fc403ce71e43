#include "serve/http_server.h"

#include <fmt/format.h>

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/status.hpp>
#include <condition_variable>
#include <future>
#include <list>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace fieldfm::serve {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

constexpr size_t kHeaderLimit = 16 * 1024;
constexpr auto kSweepEvery = std::chrono::milliseconds(200);

// Beast's parser with callbacks that copy only what the server uses into
// buffers the connection reuses: no allocation per request after warm-up
// (beast's message<> parser allocates every header field).
class RequestParser final : public http::basic_parser<true> {
 public:
  struct Parts {
    std::string method, target, body;
    int version = 11;
    bool expect_continue = false;
    void Clear() {
      method.clear();
      target.clear();
      body.clear();
      if (body.capacity() > (1u << 20)) std::string().swap(body);  // one huge request must not pin memory
      version = 11;
      expect_continue = false;
    }
  };
  explicit RequestParser(Parts* parts) : parts_(parts) {}

 private:
  void on_request_impl(http::verb, beast::string_view method, beast::string_view target, int version,
                       error_code&) override {
    parts_->method.assign(method.data(), method.size());
    parts_->target.assign(target.data(), target.size());
    parts_->version = version;
  }
  void on_response_impl(int, beast::string_view, int, error_code& ec) override { ec = http::error::bad_method; }
  void on_field_impl(http::field name, beast::string_view, beast::string_view value, error_code&) override {
    if (name == http::field::expect && beast::iequals(value, "100-continue")) parts_->expect_continue = true;
  }
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>& length, error_code&) override {
    if (length) parts_->body.reserve(size_t(*length) + HttpExchange::kBodyPadding);
  }
  size_t on_body_impl(beast::string_view data, error_code&) override {
    parts_->body.append(data.data(), data.size());
    return data.size();
  }
  void on_chunk_header_impl(std::uint64_t, beast::string_view, error_code&) override {}
  size_t on_chunk_body_impl(std::uint64_t, beast::string_view data, error_code&) override {
    parts_->body.append(data.data(), data.size());
    return data.size();
  }
  void on_finish_impl(error_code&) override {}

  Parts* parts_;
};

class Connection;

// One event loop: its io_context, its connections, its timeout sweeper.
struct IoThread {
  asio::io_context ctx{1};
  asio::steady_timer sweeper{ctx};
  std::list<std::shared_ptr<Connection>> connections;
  bool draining = false;
  std::thread thread;
};

struct Shared {
  const HttpServerOptions* options;
  std::mutex mu;
  std::condition_variable all_closed;
  int live = 0;
};

class Connection final : public HttpExchange, public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, IoThread* io, Shared* shared)
      : socket_(std::move(socket)), io_(io), shared_(shared), options_(*shared->options) {}

  // On the I/O thread, once the connection is in io->connections.
  void Start(std::list<std::shared_ptr<Connection>>::iterator self) {
    self_ = self;
    ReadHeader();
  }

  void Finish() override {
    if (io_->ctx.get_executor().running_in_this_thread()) return Write();
    asio::post(io_->ctx, [self = shared_from_this()] { self->Write(); });
  }

  void Post(std::function<void()> task) override {
    asio::post(io_->ctx, [self = shared_from_this(), task = std::move(task)] { task(); });
  }

  // Drain: a connection between requests goes now; the others after their answer.
  void CloseIfIdle() {
    if (phase_ == Phase::kIdle && served_ > 0 && buffer_.size() == 0) Cancel();
  }

  void ExpireIfLate(Clock::time_point now) {
    if (phase_ != Phase::kHandling && phase_ != Phase::kClosed && now > deadline_) Cancel();
  }

 private:
  enum class Phase { kIdle, kReading, kHandling, kWriting, kLingering, kClosed };

  void Cancel() {
    error_code ignored;
    socket_.cancel(ignored);
    socket_.close(ignored);
  }

  void ReadHeader() {
    phase_ = Phase::kIdle;
    deadline_ = Clock::now() + options_.keep_alive_timeout;
    if (io_->draining && served_ > 0 && buffer_.size() == 0) return Close();
    parts_.Clear();
    parser_.emplace(&parts_);
    parser_->header_limit(kHeaderLimit);
    parser_->body_limit(options_.max_body_bytes);
    http::async_read_header(socket_, buffer_, *parser_,
                            [self = shared_from_this()](error_code ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(error_code ec) {
    if (ec) return OnReadError(ec);
    phase_ = Phase::kReading;
    deadline_ = Clock::now() + options_.read_timeout;
    if (parser_->is_done()) return Dispatch(0);
    if (parser_->content_length() && *parser_->content_length() > options_.max_body_bytes) return Dispatch(413);
    if (parts_.expect_continue) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      asio::async_write(socket_, asio::buffer(kContinue.data(), kContinue.size()),
                        [self = shared_from_this()](error_code ec, size_t) {
                          if (ec) return self->Close();
                          self->ReadBody();
                        });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    http::async_read(socket_, buffer_, *parser_, [self = shared_from_this()](error_code ec, size_t) {
      if (ec) return self->OnReadError(ec);
      self->Dispatch(0);
    });
  }

  void OnReadError(error_code ec) {
    if (ec == http::error::body_limit) return Dispatch(413);
    if (ec == http::error::header_limit) return Dispatch(431);
    // A malformed request gets its 400; a peer that left (or was timed out) does not.
    const bool http_error = ec.category() == make_error_code(http::error::end_of_stream).category();
    if (http_error && ec != http::error::end_of_stream && ec != http::error::partial_message) return Dispatch(400);
    Close();
  }

  // Hands the request (or the layer's own rejection) to the application.
  void Dispatch(int rejected) {
    phase_ = Phase::kHandling;
    keep_alive_ = rejected == 0 && parser_->keep_alive();
    method = parts_.method;
    target = parts_.target;
    if (parts_.body.capacity() < parts_.body.size() + kBodyPadding) parts_.body.reserve(parts_.body.size() + kBodyPadding);
    body = rejected ? std::string_view() : std::string_view(parts_.body);
    this->rejected = rejected;
    status = rejected ? rejected : 200;
    content_type = "application/json";
    response_body.clear();
    if (response_body.capacity() > (1u << 20)) std::string().swap(response_body);
    options_.handler(*this);
  }

  void Write() {
    phase_ = Phase::kWriting;
    deadline_ = Clock::now() + options_.write_timeout;
    ++served_;
    const bool close = !keep_alive_ || io_->draining;
    head_.clear();
    const auto reason = http::obsolete_reason(http::status(unsigned(status)));
    fmt::format_to(std::back_inserter(head_), "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}\r\n",
                   status, std::string_view(reason.data(), reason.size()), content_type, response_body.size(),
                   close ? "Connection: close\r\n" : (parts_.version < 11 ? "Connection: keep-alive\r\n" : ""));
    const std::array<asio::const_buffer, 2> buffers = {asio::buffer(head_), asio::buffer(response_body)};
    asio::async_write(socket_, buffers, [self = shared_from_this(), close](error_code ec, size_t) {
      if (ec) return self->Close();
      if (!close) return self->ReadHeader();
      self->Linger();
    });
  }

  // Closing with unread input makes the kernel reset the connection, and the
  // client may lose the answer it was just sent: stop sending, read what is
  // left until the client closes (bounded by the read timeout), then close.
  void Linger() {
    phase_ = Phase::kLingering;
    deadline_ = Clock::now() + std::min<std::chrono::milliseconds>(options_.read_timeout, std::chrono::seconds(2));
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    buffer_.clear();
    socket_.async_read_some(buffer_.prepare(4096), [self = shared_from_this()](error_code ec, size_t) {
      if (ec) return self->Close();
      self->Linger();
    });
  }

  void Close() {
    if (phase_ == Phase::kClosed) return;
    phase_ = Phase::kClosed;
    error_code ignored;
    socket_.close(ignored);
    auto keep = shared_from_this();  // erasing drops the list's reference
    io_->connections.erase(self_);
    std::lock_guard lock(shared_->mu);
    if (--shared_->live == 0) shared_->all_closed.notify_all();
  }

  tcp::socket socket_;
  IoThread* io_;
  Shared* shared_;
  const HttpServerOptions& options_;
  std::list<std::shared_ptr<Connection>>::iterator self_;
  beast::flat_buffer buffer_;
  RequestParser::Parts parts_;
  std::optional<RequestParser> parser_;
  std::string head_;
  Phase phase_ = Phase::kIdle;
  Clock::time_point deadline_;
  bool keep_alive_ = true;
  uint64_t served_ = 0;
};

}  // namespace

struct HttpServer::Impl {
  HttpServerOptions options;
  Shared shared;
  std::vector<std::unique_ptr<IoThread>> threads;
  std::optional<tcp::acceptor> acceptor;  // on threads[0]
  std::optional<asio::steady_timer> accept_retry;
  size_t next_thread = 0;
  int bound_port = 0;
  bool started = false, running = false, stopped = false;

  explicit Impl(HttpServerOptions o) : options(std::move(o)) { shared.options = &options; }

  void Log(const std::string& line) {
    if (options.log) options.log(line);
  }

  void Accept() {
    IoThread& target = *threads[next_thread];
    next_thread = (next_thread + 1) % threads.size();
    acceptor->async_accept(target.ctx, [this, &target](error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor->is_open()) return;
      if (ec) {  // e.g. out of file descriptors: back off instead of spinning
        Log("accept failed: " + ec.message());
        accept_retry->expires_after(std::chrono::milliseconds(50));
        accept_retry->async_wait([this](error_code ec) {
          if (!ec && acceptor->is_open()) Accept();
        });
        return;
      }
      error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      {
        std::lock_guard lock(shared.mu);
        ++shared.live;
      }
      asio::post(target.ctx, [this, &target, s = std::move(socket)]() mutable {
        auto conn = std::make_shared<Connection>(std::move(s), &target, &shared);
        target.connections.push_front(conn);
        conn->Start(target.connections.begin());
      });
      Accept();
    });
  }

  void Sweep(IoThread& t) {
    t.sweeper.expires_after(kSweepEvery);
    t.sweeper.async_wait([this, &t](error_code ec) {
      if (ec) return;
      const auto now = Clock::now();
      for (auto it = t.connections.begin(); it != t.connections.end();) (*it++)->ExpireIfLate(now);
      Sweep(t);
    });
  }
};

HttpServer::HttpServer(HttpServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

HttpServer::~HttpServer() { Stop(); }

Status HttpServer::Start() {
  Impl& s = *impl_;
  if (s.started) return Status::InvalidArgument("http server already started");
  s.started = true;
  const int n = std::max(1, s.options.io_threads);
  for (int i = 0; i < n; ++i) s.threads.push_back(std::make_unique<IoThread>());
  asio::io_context& ctx0 = s.threads[0]->ctx;
  s.acceptor.emplace(ctx0);
  s.accept_retry.emplace(ctx0);

  error_code ec;
  tcp::resolver resolver(ctx0);
  const auto endpoints = resolver.resolve(s.options.host, std::to_string(s.options.port),
                                          tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec) return Status::IOError(fmt::format("cannot resolve {} ({})", s.options.host, ec.message()));
  bool bound = false;
  for (const auto& entry : endpoints) {
    error_code e;
    s.acceptor->close(e);
    s.acceptor->open(entry.endpoint().protocol(), e);
    if (e) continue;
    // SO_REUSEADDR for fast restarts; no SO_REUSEPORT, which would let a
    // second server silently share the port.
    s.acceptor->set_option(tcp::acceptor::reuse_address(true), e);
    s.acceptor->bind(entry.endpoint(), e);
    if (e) {
      ec = e;
      continue;
    }
    s.acceptor->listen(asio::socket_base::max_listen_connections, e);
    if (e) {
      ec = e;
      continue;
    }
    bound = true;
    break;
  }
  if (!bound) {
    error_code ignored;
    s.acceptor->close(ignored);
    return Status::IOError(fmt::format("cannot listen on {}:{} ({})", s.options.host, s.options.port, ec.message()));
  }
  s.bound_port = s.acceptor->local_endpoint().port();
  s.Accept();
  for (auto& t : s.threads) {
    s.Sweep(*t);
    t->thread = std::thread([&ctx = t->ctx] {
      auto guard = asio::make_work_guard(ctx);
      ctx.run();
    });
  }
  s.running = true;
  return Status::Ok();
}

int HttpServer::port() const { return impl_->bound_port; }

void HttpServer::Stop() {
  Impl& s = *impl_;
  if (!s.running || s.stopped) return;
  s.stopped = true;
  // Stop accepting, then close idle connections; busy ones close after their answer.
  std::promise<void> closed;
  asio::post(s.threads[0]->ctx, [&] {
    error_code ignored;
    s.acceptor->close(ignored);
    s.accept_retry->cancel();
    closed.set_value();
  });
  closed.get_future().wait();
  for (auto& t : s.threads) {
    asio::post(t->ctx, [t = t.get()] {
      t->draining = true;
      for (auto it = t->connections.begin(); it != t->connections.end();) (*it++)->CloseIfIdle();
    });
  }
  {
    std::unique_lock lock(s.shared.mu);
    s.shared.all_closed.wait(lock, [&] { return s.shared.live == 0; });
  }
  for (auto& t : s.threads) t->ctx.stop();
  for (auto& t : s.threads) {
    if (t->thread.joinable()) t->thread.join();
  }
}

}  // namespace fieldfm::serve
