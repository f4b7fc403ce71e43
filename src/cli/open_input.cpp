#include "cli/open_input.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "fieldfm/cache.h"

namespace fieldfm::cli {

std::string CachePathFor(const std::string& path) { return path + ".fieldfm-cache"; }

Result<std::unique_ptr<ExampleSource>> OpenInput(const FeaturePipeline& pipeline, const std::string& path,
                                                 const ReadOptions& read, bool use_cache) {
  // A cache given as the input is read as it is (no cache of a cache).
  if (!use_cache || IsCacheFile(path)) return pipeline.Open(path, read);
  const std::string cache_path = CachePathFor(path);
  FIELDFM_ASSIGN_OR_RETURN(CacheKey key, CacheKeyForFile(path, pipeline.Fingerprint()));
  std::filesystem::path dir = std::filesystem::absolute(cache_path).parent_path();
  // access() says yes to root everywhere; a directory with no write bit at all
  // (e.g. the shared read-only data sets) is treated as read-only for root too.
  struct stat st {};
  const bool no_write_bits = ::stat(dir.c_str(), &st) == 0 && (st.st_mode & (S_IWUSR | S_IWGRP | S_IWOTH)) == 0;
  if (::access(dir.c_str(), W_OK) != 0 || no_write_bits) {
    std::fprintf(stderr, "note: %s is not writable; reading %s without a cache\n", dir.c_str(), path.c_str());
    return pipeline.Open(path, read);
  }
  auto open_text = [&]() { return pipeline.Open(path, read); };
  FIELDFM_ASSIGN_OR_RETURN(std::unique_ptr<CacheSource> cache, OpenOrBuildCache(cache_path, key, open_text));
  return std::unique_ptr<ExampleSource>(std::move(cache));
}

}  // namespace fieldfm::cli
