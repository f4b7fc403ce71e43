// Small, allocation-free parsing helpers shared by the line parsers.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

namespace fieldfm::data {

enum class NumStatus { kOk, kInvalid, kOverflow, kNonFinite };

// Decimal unsigned 32-bit integer; the whole token must be digits.
inline NumStatus ParseU32(std::string_view s, uint32_t* out) {
  if (s.empty() || s.size() > 10) {
    if (s.empty()) return NumStatus::kInvalid;
    for (char c : s) {
      if (c < '0' || c > '9') return NumStatus::kInvalid;
    }
    // More than 10 digits: overflow unless leading zeros.
    size_t i = 0;
    while (i + 10 < s.size() && s[i] == '0') ++i;
    if (s.size() - i > 10) return NumStatus::kOverflow;
    s.remove_prefix(i);
  }
  uint64_t v = 0;
  for (char c : s) {
    unsigned d = static_cast<unsigned>(c - '0');
    if (d > 9) return NumStatus::kInvalid;
    v = v * 10 + d;
  }
  if (v > UINT32_MAX) return NumStatus::kOverflow;
  *out = static_cast<uint32_t>(v);
  return NumStatus::kOk;
}

// Finite decimal float ("1", "-0.25", "3e-4", "+1"); rejects NaN/Inf.
inline NumStatus ParseDouble(std::string_view s, double* out) {
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  if (s.empty()) return NumStatus::kInvalid;
  double v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ptr != s.data() + s.size()) return NumStatus::kInvalid;
  if (ec == std::errc::result_out_of_range) return NumStatus::kNonFinite;
  if (ec != std::errc()) return NumStatus::kInvalid;
  if (!std::isfinite(v)) return NumStatus::kNonFinite;
  *out = v;
  return NumStatus::kOk;
}

inline NumStatus ParseFloat(std::string_view s, float* out) {
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  if (s.empty()) return NumStatus::kInvalid;
  // Fast path for short integers ("1", "0", "-3"); fractions go to from_chars,
  // which rounds correctly.
  if (s.size() <= 9) {
    size_t i = s[0] == '-' ? 1 : 0;
    uint32_t v = 0;
    size_t start = i;
    while (i < s.size() && static_cast<unsigned>(s[i] - '0') <= 9) v = v * 10 + static_cast<uint32_t>(s[i++] - '0');
    if (i == s.size() && i > start) {
      *out = start ? -static_cast<float>(v) : static_cast<float>(v);
      return NumStatus::kOk;
    }
  }
  float v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ptr != s.data() + s.size()) return NumStatus::kInvalid;
  if (ec == std::errc::result_out_of_range) return NumStatus::kNonFinite;
  if (ec != std::errc()) return NumStatus::kInvalid;
  if (!std::isfinite(v)) return NumStatus::kNonFinite;
  *out = v;
  return NumStatus::kOk;
}

// Token as shown in error messages: quoted, shortened when long.
inline std::string QuoteToken(std::string_view tok) {
  constexpr size_t kMax = 40;
  std::string out = "(token '";
  if (tok.size() > kMax) {
    out.append(tok.substr(0, kMax));
    out.append("...");
  } else {
    out.append(tok);
  }
  out.append("')");
  return out;
}

bool IsValidUtf8(std::string_view s);

inline std::string_view StripCr(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

inline bool IsBlank(std::string_view line) {
  for (char c : line) {
    if (c != ' ' && c != '\t' && c != '\r') return false;
  }
  return true;
}

}  // namespace fieldfm::data
