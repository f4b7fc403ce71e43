#include "serve/metrics.h"

#include <fmt/format.h>

namespace fieldfm::serve {

Endpoint EndpointFor(std::string_view path) {
  if (path == "/v1/predict") return Endpoint::kPredict;
  if (path.starts_with("/v1/models/") && path.ends_with(":predict")) return Endpoint::kTfPredict;
  if (path == "/v1/reload") return Endpoint::kReload;
  if (path == "/v1/model") return Endpoint::kModel;
  if (path == "/healthz") return Endpoint::kHealthz;
  if (path == "/readyz") return Endpoint::kReadyz;
  if (path == "/metrics") return Endpoint::kMetrics;
  return Endpoint::kOther;
}

const char* EndpointLabel(Endpoint e) {
  switch (e) {
    case Endpoint::kPredict: return "/v1/predict";
    case Endpoint::kTfPredict: return "/v1/models/:predict";
    case Endpoint::kReload: return "/v1/reload";
    case Endpoint::kModel: return "/v1/model";
    case Endpoint::kHealthz: return "/healthz";
    case Endpoint::kReadyz: return "/readyz";
    case Endpoint::kMetrics: return "/metrics";
    default: return "other";
  }
}

size_t RequestMetrics::StatusSlot(int status) {
  for (size_t i = 0; i + 1 < kStatuses.size(); ++i) {
    if (kStatuses[i] == status) return i;
  }
  return kStatuses.size() - 1;
}

void RequestMetrics::CountResponse(Endpoint e, int status) {
  counts_[static_cast<size_t>(e)][StatusSlot(status)].fetch_add(1, std::memory_order_relaxed);
}

uint64_t RequestMetrics::responses(Endpoint e, int status) const {
  return counts_[static_cast<size_t>(e)][StatusSlot(status)].load(std::memory_order_relaxed);
}

void RequestMetrics::ObserveLatency(Endpoint e, double seconds) {
  const size_t ep = static_cast<size_t>(e);
  size_t b = 0;
  while (b < kBucketsSeconds.size() && seconds > kBucketsSeconds[b]) ++b;
  buckets_[ep][b].fetch_add(1, std::memory_order_relaxed);
  latency_sum_ns_[ep].fetch_add(static_cast<uint64_t>(seconds * 1e9), std::memory_order_relaxed);
}

std::string EscapeLabel(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

void AppendMetric(std::string* out, std::string_view name, std::string_view type, std::string_view help,
                  double value, std::string_view labels) {
  fmt::format_to(std::back_inserter(*out), "# HELP {} {}\n# TYPE {} {}\n{}", name, help, name, type, name);
  if (!labels.empty()) fmt::format_to(std::back_inserter(*out), "{{{}}}", labels);
  fmt::format_to(std::back_inserter(*out), " {}\n", value);
}

void RequestMetrics::Render(std::string* out) const {
  auto o = std::back_inserter(*out);
  fmt::format_to(o, "# HELP fieldfm_requests_total HTTP responses by endpoint and status.\n"
                    "# TYPE fieldfm_requests_total counter\n");
  for (size_t ep = 0; ep < kEndpoints; ++ep) {
    for (size_t s = 0; s < kStatuses.size(); ++s) {
      const uint64_t n = counts_[ep][s].load(std::memory_order_relaxed);
      if (n == 0) continue;
      const std::string status = kStatuses[s] == 0 ? "other" : std::to_string(kStatuses[s]);
      fmt::format_to(o, "fieldfm_requests_total{{path=\"{}\",status=\"{}\"}} {}\n",
                     EndpointLabel(static_cast<Endpoint>(ep)), status, n);
    }
  }
  fmt::format_to(o, "# HELP fieldfm_request_duration_seconds Handler latency by endpoint.\n"
                    "# TYPE fieldfm_request_duration_seconds histogram\n");
  for (size_t ep = 0; ep < kEndpoints; ++ep) {
    uint64_t cumulative = 0;
    for (size_t b = 0; b <= kBucketsSeconds.size(); ++b) cumulative += buckets_[ep][b].load(std::memory_order_relaxed);
    if (cumulative == 0) continue;
    const char* label = EndpointLabel(static_cast<Endpoint>(ep));
    cumulative = 0;
    for (size_t b = 0; b < kBucketsSeconds.size(); ++b) {
      cumulative += buckets_[ep][b].load(std::memory_order_relaxed);
      fmt::format_to(o, "fieldfm_request_duration_seconds_bucket{{path=\"{}\",le=\"{}\"}} {}\n", label,
                     kBucketsSeconds[b], cumulative);
    }
    cumulative += buckets_[ep][kBucketsSeconds.size()].load(std::memory_order_relaxed);
    fmt::format_to(o, "fieldfm_request_duration_seconds_bucket{{path=\"{}\",le=\"+Inf\"}} {}\n", label, cumulative);
    fmt::format_to(o, "fieldfm_request_duration_seconds_sum{{path=\"{}\"}} {}\n", label,
                   latency_sum_ns_[ep].load(std::memory_order_relaxed) / 1e9);
    fmt::format_to(o, "fieldfm_request_duration_seconds_count{{path=\"{}\"}} {}\n", label, cumulative);
  }
}

}  // namespace fieldfm::serve
