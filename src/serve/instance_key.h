// Cache keys: a 64-bit hash of the canonical form of an instance (features
// sorted by field, then index, then value; values included), mixed with a tag
// derived from the model version.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "fieldfm/example.h"

namespace fieldfm::serve {

// `scratch` avoids an allocation per call; its content is overwritten.
uint64_t CanonicalInstanceHash(std::span<const Feature> features, std::vector<Feature>* scratch);
uint64_t ModelTag(std::string_view model_version);
uint64_t CacheKey(uint64_t instance_hash, uint64_t model_tag);

}  // namespace fieldfm::serve
