// Stable hashing of categorical values. These numbers are baked into every
// trained model, so the functions must never change (golden tests pin them).
#pragma once

#include <xxhash.h>

#include <cstdint>
#include <string_view>

namespace fieldfm::data {

// The per-field seed: the field's name is mixed in, so equal strings in two
// fields land on independent indices and adding a column does not move others.
inline uint64_t FieldHashSeed(uint64_t seed, std::string_view field_name) {
  return seed ^ XXH64(field_name.data(), field_name.size(), 0);
}

// Index of `value` in a hashed space of 2^bits slots.
inline uint32_t HashedIndex(std::string_view value, uint64_t field_seed, int bits) {
  uint64_t h = XXH64(value.data(), value.size(), field_seed);
  return static_cast<uint32_t>(h & ((uint64_t{1} << bits) - 1));
}

}  // namespace fieldfm::data
