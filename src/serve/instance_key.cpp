#include "serve/instance_key.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>

namespace fieldfm::serve {

uint64_t CanonicalInstanceHash(std::span<const Feature> features, std::vector<Feature>* scratch) {
  scratch->assign(features.begin(), features.end());
  for (Feature& f : *scratch) {
    if (f.value == 0.0f) f.value = 0.0f;  // -0 and +0 are the same instance
  }
  std::sort(scratch->begin(), scratch->end(), [](const Feature& a, const Feature& b) {
    if (a.field != b.field) return a.field < b.field;
    if (a.index != b.index) return a.index < b.index;
    return a.value < b.value;
  });
  static_assert(sizeof(Feature) == 12, "hashing relies on a padding-free Feature");
  return XXH3_64bits(scratch->data(), scratch->size() * sizeof(Feature));
}

uint64_t ModelTag(std::string_view model_version) {
  return XXH3_64bits_withSeed(model_version.data(), model_version.size(), 0x6d6f64656cULL);
}

uint64_t CacheKey(uint64_t instance_hash, uint64_t model_tag) {
  const uint64_t both[2] = {instance_hash, model_tag};
  return XXH3_64bits(both, sizeof(both));
}

}  // namespace fieldfm::serve
