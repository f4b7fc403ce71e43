// Errors as values at module boundaries (LevelDB/abseil style).
// A Status is ok or carries a code and a human message such as
// "train.ffm:17: missing ':' in feature (token '3-17')".
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace fieldfm {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // bad usage or configuration (CLI exit 2)
  kDataError,        // malformed input data (CLI exit 1)
  kIOError,          // file system (CLI exit 1)
  kCorruption,       // checksum / magic / version mismatch (CLI exit 1)
  kNotFound,
  kInternal,
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string msg) { return {StatusCode::kInvalidArgument, std::move(msg)}; }
  static Status DataError(std::string msg) { return {StatusCode::kDataError, std::move(msg)}; }
  static Status IOError(std::string msg) { return {StatusCode::kIOError, std::move(msg)}; }
  static Status Corruption(std::string msg) { return {StatusCode::kCorruption, std::move(msg)}; }
  static Status NotFound(std::string msg) { return {StatusCode::kNotFound, std::move(msg)}; }
  static Status Internal(std::string msg) { return {StatusCode::kInternal, std::move(msg)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const { return ok() ? std::string("OK") : message_; }

  // Prefixes context, e.g. WithContext("reading schema.toml").
  Status WithContext(const std::string& ctx) const {
    if (ok()) return *this;
    return Status(code_, ctx + ": " + message_);
  }

 private:
  Status(StatusCode c, std::string m) : code_(c), message_(std::move(m)) {}
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Minimal std::expected stand-in (g++ 12 has no <expected>).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}            // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {      // NOLINT(google-explicit-constructor)
    assert(!std::get<Status>(v_).ok() && "Result built from an ok Status");
  }
  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace fieldfm

#define FIELDFM_CONCAT_INNER(a, b) a##b
#define FIELDFM_CONCAT(a, b) FIELDFM_CONCAT_INNER(a, b)

// Returns early from the enclosing function when `expr` yields a non-ok Status.
#define FIELDFM_RETURN_IF_ERROR(expr)              \
  do {                                             \
    ::fieldfm::Status _st = (expr);                \
    if (!_st.ok()) return _st;                     \
  } while (0)

// FIELDFM_ASSIGN_OR_RETURN(auto x, MakeX()); returns the error if MakeX failed.
#define FIELDFM_ASSIGN_OR_RETURN(lhs, expr)                               \
  auto FIELDFM_CONCAT(_res_, __LINE__) = (expr);                          \
  if (!FIELDFM_CONCAT(_res_, __LINE__).ok())                              \
    return FIELDFM_CONCAT(_res_, __LINE__).status();                      \
  lhs = std::move(FIELDFM_CONCAT(_res_, __LINE__)).value()
