// The unit every module exchanges: examples as (field, index, value) triples,
// stored column-wise in CSR blocks so a block can live in a std::vector or be
// a view over an mmap-ed cache file without a copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace fieldfm {

// One active feature of an example. `index` is global (libffm convention): the
// same index in two fields is two different rows only for field-aware tables.
struct Feature {
  uint32_t field = 0;
  uint32_t index = 0;
  float value = 1.0f;
  friend bool operator==(const Feature&, const Feature&) = default;
};
static_assert(sizeof(Feature) == 12, "Feature is stored raw in the binary cache");

// Read-only view of `rows` examples: row r owns features[offsets[r], offsets[r+1]).
struct BatchView {
  const float* labels = nullptr;
  const float* weights = nullptr;
  const uint64_t* offsets = nullptr;  // rows + 1 entries; offsets[0] may be non-zero
  const Feature* features = nullptr;
  size_t rows = 0;

  std::span<const Feature> row(size_t r) const {
    return {features + offsets[r], features + offsets[r + 1]};
  }
  // Rows [begin, end) as a view sharing the same storage.
  BatchView slice(size_t begin, size_t end) const {
    return BatchView{labels + begin, weights + begin, offsets + begin, features, end - begin};
  }
};

// Owning, growable block of examples.
struct ExampleBlock {
  std::vector<float> labels;
  std::vector<float> weights;
  std::vector<uint64_t> offsets{0};
  std::vector<Feature> features;

  size_t rows() const { return labels.size(); }
  bool empty() const { return labels.empty(); }
  void clear() {
    labels.clear();
    weights.clear();
    offsets.assign(1, 0);
    features.clear();
  }
  void add(float label, float weight, std::span<const Feature> feats) {
    labels.push_back(label);
    weights.push_back(weight);
    features.insert(features.end(), feats.begin(), feats.end());
    offsets.push_back(features.size());
  }
  std::span<const Feature> row(size_t r) const {
    return {features.data() + offsets[r], features.data() + offsets[r + 1]};
  }
  BatchView view() const {
    return BatchView{labels.data(), weights.data(), offsets.data(), features.data(), rows()};
  }
};

}  // namespace fieldfm
