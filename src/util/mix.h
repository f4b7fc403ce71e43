// splitmix64 finaliser: a good 64-bit bijective mixer, used wherever a seed
// must be turned into well-spread bits (shuffles, initialisation, dropout).
#pragma once

#include <cstdint>

namespace fieldfm {

inline uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace fieldfm
