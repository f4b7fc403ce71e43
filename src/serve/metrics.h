// Request counters and latency histograms by endpoint, rendered in the
// Prometheus text format. Lock-free: fixed endpoint and status tables.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace fieldfm::serve {

enum class Endpoint { kPredict, kTfPredict, kReload, kModel, kHealthz, kReadyz, kMetrics, kOther, kCount };

// The label for a request path ("/v1/models/foo:predict" -> kTfPredict).
Endpoint EndpointFor(std::string_view path);
const char* EndpointLabel(Endpoint e);

class RequestMetrics {
 public:
  static constexpr std::array<double, 16> kBucketsSeconds = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
      0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0,   10.0};

  void CountResponse(Endpoint e, int status);
  void ObserveLatency(Endpoint e, double seconds);
  uint64_t responses(Endpoint e, int status) const;
  // Appends the fieldfm_requests_total and fieldfm_request_duration_seconds families.
  void Render(std::string* out) const;

 private:
  static constexpr std::array<int, 9> kStatuses = {200, 400, 404, 405, 408, 413, 500, 503, 0 /* other */};
  static size_t StatusSlot(int status);
  static constexpr size_t kEndpoints = static_cast<size_t>(Endpoint::kCount);

  std::array<std::array<std::atomic<uint64_t>, kStatuses.size()>, kEndpoints> counts_{};
  std::array<std::array<std::atomic<uint64_t>, kBucketsSeconds.size() + 1>, kEndpoints> buckets_{};
  std::array<std::atomic<uint64_t>, kEndpoints> latency_sum_ns_{};
};

// One sample line with its HELP/TYPE header: `name{labels} value`.
void AppendMetric(std::string* out, std::string_view name, std::string_view type, std::string_view help,
                  double value, std::string_view labels = {});

// Escapes a label value (backslash, quote, newline).
std::string EscapeLabel(std::string_view value);

}  // namespace fieldfm::serve
