#include "util/float_text.h"

#include <bit>
#include <charconv>
#include <cstdint>
#include <cstring>

namespace fieldfm {

namespace {

constexpr uint64_t Pow5(int n) {
  uint64_t r = 1;
  for (int i = 0; i < n; ++i) r *= 5;
  return r;
}

// 5^0 .. 5^27 (5^27 < 2^63).
constexpr auto kPow5 = [] {
  struct Table {
    uint64_t v[28];
  } t{};
  for (int i = 0; i < 28; ++i) t.v[i] = Pow5(i);
  return t;
}();

char* Fallback(float v, char* p) { return std::to_chars(p, p + kMaxG7Chars, v, std::chars_format::general, 7).ptr; }

}  // namespace

char* FormatG7(float v, char* p) {
  const float a = v < 0 ? -v : v;
  // The exact path needs 6 - X <= 27 for the decimal exponent X, so |v| >= 1e-21.
  if (!(a >= 1e-20f && a < 1e7f)) return Fallback(v, p);
  const uint32_t bits = std::bit_cast<uint32_t>(a);
  const int biased = int(bits >> 23);  // normal: a >= 1e-20 is far above the subnormals
  const uint64_t m = (bits & 0x7fffffu) | 0x800000u;
  const int q = biased - 150;  // a = m * 2^q
  // X = floor(log10 a): start at floor(e2 * log10 2) and correct by one as
  // the 7-digit integer part demands.
  int X = ((biased - 127) * 1233) >> 12;
  uint64_t N;
  bool above_half, at_half;
  for (;;) {
    const int n = 6 - X;  // N = floor(a * 10^n) should have 7 digits
    if (n < 0 || n > 27) return Fallback(v, p);
    const unsigned __int128 P = static_cast<unsigned __int128>(m) * kPow5.v[n];  // a * 10^n = P * 2^(q+n)
    const int s = q + n;
    if (s >= 0) {
      N = uint64_t(P << s);
      above_half = at_half = false;
    } else {
      const int sh = -s;
      if (sh >= 127) return Fallback(v, p);
      N = uint64_t(P >> sh);
      const unsigned __int128 half = static_cast<unsigned __int128>(1) << (sh - 1);
      const unsigned __int128 rem = P & ((half << 1) - 1);
      above_half = rem > half;
      at_half = rem == half;
    }
    if (N >= 10000000u) {
      ++X;
    } else if (N < 1000000u) {
      --X;
    } else {
      break;
    }
  }
  // Round half to even, as printf does on the exact binary value.
  if (above_half || (at_half && (N & 1))) ++N;
  if (N == 10000000u) {
    N = 1000000u;
    ++X;
  }
  char d[7];
  for (int i = 6; i >= 0; --i) {
    d[i] = char('0' + N % 10);
    N /= 10;
  }
  int sig = 7;  // digits left once trailing zeros go ("%g" drops them)
  while (sig > 1 && d[sig - 1] == '0') --sig;
  if (v < 0) *p++ = '-';
  if (X >= -4 && X < 7) {
    if (X >= 0) {
      std::memcpy(p, d, size_t(X) + 1);
      p += X + 1;
      if (sig > X + 1) {
        *p++ = '.';
        std::memcpy(p, d + X + 1, size_t(sig - X - 1));
        p += sig - X - 1;
      }
    } else {
      *p++ = '0';
      *p++ = '.';
      for (int i = 0; i < -X - 1; ++i) *p++ = '0';
      std::memcpy(p, d, size_t(sig));
      p += sig;
    }
    return p;
  }
  *p++ = d[0];
  if (sig > 1) {
    *p++ = '.';
    std::memcpy(p, d + 1, size_t(sig - 1));
    p += sig - 1;
  }
  *p++ = 'e';
  *p++ = X < 0 ? '-' : '+';
  const int e = X < 0 ? -X : X;
  *p++ = char('0' + e / 10);
  *p++ = char('0' + e % 10);
  return p;
}

}  // namespace fieldfm
