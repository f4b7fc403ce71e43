// Text of a float as printf's "%.7g" (the prediction file's format), faster
// than std::to_chars for the values a model outputs.
#pragma once

#include <cstddef>

namespace fieldfm {

// The longest "%.7g" of a float: sign, 7 digits, point, "e-45".
inline constexpr size_t kMaxG7Chars = 14;

// Writes "%.7g" of `v` at `p` (no terminator) and returns the end; at most
// kMaxG7Chars bytes. Byte for byte the text of std::to_chars(general, 7).
// Positive and negative values in [1e-20, 1e7) take an exact integer path
// (the digits of m * 2^q * 10^n in 128-bit arithmetic, rounded half to even);
// everything else (zero, subnormals, infinities, NaN, large values) goes to
// std::to_chars.
char* FormatG7(float v, char* p);

}  // namespace fieldfm
