// Opening a data file for training, evaluation or prediction: through the
// binary cache next to it (parsed once, re-used by every epoch and every later
// run until the file or the pipeline changes), or straight from the text.
#pragma once

#include <memory>
#include <string>

#include "fieldfm/data.h"
#include "fieldfm/source.h"

namespace fieldfm::cli {

// "<path>.fieldfm-cache": the cache file `OpenInput` keeps beside `path`.
std::string CachePathFor(const std::string& path);

// With use_cache, the cache is (re)built when missing or stale and then read
// by mmap; if it cannot be written (read-only directory), the text is read
// directly and a note goes to stderr.
Result<std::unique_ptr<ExampleSource>> OpenInput(const FeaturePipeline& pipeline, const std::string& path,
                                                 const ReadOptions& read, bool use_cache);

}  // namespace fieldfm::cli
