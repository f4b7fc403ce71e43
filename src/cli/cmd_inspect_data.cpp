// `fieldfm inspect-data FILE...`: what the pipeline makes of a data file,
// per file (rows, bytes, label balance) and per field (coverage, distinct
// values, positive rate). The quickest way to check a schema before training.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <string>
#include <unordered_set>
#include <vector>

#include "cli/command.h"
#include "cli/pipeline_flags.h"

namespace fieldfm::cli {
namespace {

struct FieldStats {
  uint64_t rows = 0;       // rows with at least one feature in the field
  uint64_t positives = 0;  // ... of which label > 0.5
  std::unordered_set<uint32_t> distinct;
};

struct FileStats {
  std::string path;
  ReadStats read;
  uint64_t positives = 0, negatives = 0, other = 0;
  double label_sum = 0;
};

struct InspectArgs {
  std::vector<std::string> files;
  PipelineFlags flags;
  bool json = false;
};

Status Inspect(const InspectArgs& args) {
  FIELDFM_ASSIGN_OR_RETURN(FeaturePipeline pipeline, BuildPipeline(args.flags, args.files.front()));
  const ReadOptions read = ToReadOptions(args.flags);
  std::vector<FieldStats> fields(pipeline.num_fields());
  std::vector<FileStats> files;
  uint64_t total_rows = 0;
  ExampleBlock block;
  std::vector<uint32_t> seen_fields;
  for (const auto& path : args.files) {
    FIELDFM_ASSIGN_OR_RETURN(auto source, pipeline.Open(path, read));
    FileStats fs;
    fs.path = path;
    for (;;) {
      FIELDFM_ASSIGN_OR_RETURN(size_t n, source->Next(&block, 8192));
      if (n == 0) break;
      for (size_t r = 0; r < n; ++r) {
        const float y = block.labels[r];
        fs.label_sum += y;
        if (y == 1.0f) {
          ++fs.positives;
        } else if (y == 0.0f) {
          ++fs.negatives;
        } else {
          ++fs.other;
        }
        seen_fields.clear();
        for (const Feature& f : block.row(r)) {
          if (f.field >= fields.size()) fields.resize(f.field + 1);
          fields[f.field].distinct.insert(f.index);
          seen_fields.push_back(f.field);
        }
        std::sort(seen_fields.begin(), seen_fields.end());
        seen_fields.erase(std::unique(seen_fields.begin(), seen_fields.end()), seen_fields.end());
        for (uint32_t f : seen_fields) {
          ++fields[f].rows;
          if (y > 0.5f) ++fields[f].positives;
        }
      }
      total_rows += n;
    }
    fs.read = source->stats();
    files.push_back(std::move(fs));
  }

  const std::vector<std::string> names = pipeline.field_names();
  auto field_name = [&](size_t f) { return f < names.size() ? names[f] : "f" + std::to_string(f); };
  if (args.json) {
    nlohmann::json out = {{"format", InputFormatName(pipeline.format())},
                          {"num_fields", fields.size()},
                          {"index_space", pipeline.index_space()},
                          {"fingerprint", pipeline.Fingerprint()}};
    for (const auto& fs : files) {
      const uint64_t rows = fs.read.rows;
      out["files"].push_back({{"path", fs.path},
                              {"rows", rows},
                              {"bytes", fs.read.bytes},
                              {"bad_lines", fs.read.bad_lines},
                              {"first_errors", fs.read.first_errors},
                              {"max_field", fs.read.max_field},
                              {"max_index", fs.read.max_index},
                              {"labels",
                               {{"ones", fs.positives},
                                {"zeros", fs.negatives},
                                {"other", fs.other},
                                {"mean", rows ? fs.label_sum / rows : 0.0}}}});
    }
    out["fields"] = nlohmann::json::array();
    for (size_t f = 0; f < fields.size(); ++f) {
      const FieldStats& s = fields[f];
      out["fields"].push_back({{"field", f},
                               {"name", field_name(f)},
                               {"rows", s.rows},
                               {"distinct", s.distinct.size()},
                               {"missing", total_rows - s.rows},
                               {"positive_rate", s.rows ? static_cast<double>(s.positives) / s.rows : 0.0}});
    }
    std::printf("%s\n", out.dump(2).c_str());
    return Status::Ok();
  }
  std::printf("format %s, %zu fields, index space %llu\n", InputFormatName(pipeline.format()), fields.size(),
              static_cast<unsigned long long>(pipeline.index_space()));
  std::printf("\n%-40s %10s %12s %9s %10s %10s %8s %10s\n", "file", "rows", "bytes", "bad", "label=1", "label=0",
              "other", "mean");
  for (const auto& fs : files) {
    const uint64_t rows = fs.read.rows;
    std::printf("%-40s %10llu %12llu %9llu %10llu %10llu %8llu %10.4f\n", fs.path.c_str(),
                static_cast<unsigned long long>(rows), static_cast<unsigned long long>(fs.read.bytes),
                static_cast<unsigned long long>(fs.read.bad_lines), static_cast<unsigned long long>(fs.positives),
                static_cast<unsigned long long>(fs.negatives), static_cast<unsigned long long>(fs.other),
                rows ? fs.label_sum / rows : 0.0);
    for (const auto& e : fs.read.first_errors) std::printf("  skipped: %s\n", e.c_str());
  }
  std::printf("\n%6s %-24s %10s %10s %10s %9s\n", "field", "name", "rows", "distinct", "missing", "pos_rate");
  for (size_t f = 0; f < fields.size(); ++f) {
    const FieldStats& s = fields[f];
    std::printf("%6zu %-24s %10llu %10zu %10llu %9.4f\n", f, field_name(f).c_str(),
                static_cast<unsigned long long>(s.rows), s.distinct.size(),
                static_cast<unsigned long long>(total_rows - s.rows),
                s.rows ? static_cast<double>(s.positives) / s.rows : 0.0);
  }
  return Status::Ok();
}

Register kInspectData{{"inspect-data", "Summarize a data file as the feature pipeline sees it",
                       [](CLI::App& sub) -> Runner {
                         auto args = std::make_shared<InspectArgs>();
                         sub.add_option("files", args->files, "Data files (the first one fits vocabularies/bins)")
                             ->required();
                         AddPipelineFlags(sub, &args->flags);
                         sub.add_flag("--json", args->json, "Print JSON instead of tables");
                         return [args] { return Inspect(*args); };
                       },
                       40}};

}  // namespace
}  // namespace fieldfm::cli
