// Input sizes of the benchmarks. CI runs every benchmark once with
// FIELDFM_BENCH_SMOKE=1 (ctest `bench_smoke`) so none of them rots; inputs then
// shrink a thousandfold and the timings mean nothing.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdlib>

namespace fieldfm::bench {

inline bool Smoke() {
  static const bool smoke = std::getenv("FIELDFM_BENCH_SMOKE") != nullptr;
  return smoke;
}

// `full` normally; a thousandth of it (at least `floor`) in smoke runs.
inline size_t Size(size_t full, size_t floor = 64) { return Smoke() ? std::max(full / 1000, floor) : full; }

}  // namespace fieldfm::bench
