// Rows [0, n) split into `threads` equal parts, part 0 on the calling thread.
#pragma once

#include <algorithm>
#include <cstddef>
#include <thread>
#include <vector>

namespace fieldfm {

// fn(t, begin, end) for part 0 (empty when n is 0) and each non-empty part
// t > 0; returns when all are done.
template <class Fn>
void ParallelParts(size_t n, int threads, const Fn& fn) {
  threads = std::max(1, threads);
  const size_t per = (n + threads - 1) / threads;
  std::vector<std::thread> pool;
  for (int t = 1; t < threads && size_t(t) * per < n; ++t)
    pool.emplace_back([&fn, t, per, n] { fn(t, size_t(t) * per, std::min(n, size_t(t) * per + per)); });
  fn(0, size_t(0), std::min(n, per));
  for (auto& th : pool) th.join();
}

}  // namespace fieldfm
