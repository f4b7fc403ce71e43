#include "cli/pipeline_flags.h"

namespace fieldfm::cli {

void AddPipelineFlags(CLI::App& app, PipelineFlags* flags) {
  app.add_option("--format", flags->format, "Input format: auto, libffm, libsvm (libfm), csv, tsv")
      ->capture_default_str();
  app.add_option("--schema", flags->schema, "CSV/TSV schema file (.toml or .json)");
  app.add_option("--preset", flags->preset, "Built-in CSV/TSV schema: criteo, avazu");
  app.add_option("--field-map", flags->field_map, "libsvm: file of 'field lo hi' index ranges");
  app.add_option("--hash-bits", flags->hash_bits, "Hashed categorical space is 2^bits")
      ->check(CLI::Range(1, 30))
      ->capture_default_str();
  app.add_option("--hash-seed", flags->hash_seed, "Seed of the categorical hash")->capture_default_str();
  app.add_flag("--no-header", flags->no_header, "CSV/TSV input has no header line");
  app.add_flag("--keep-minus-one", flags->keep_minus_one, "Keep label -1 (default: -1 becomes 0)");
  app.add_flag("--skip-bad-lines", flags->skip_bad_lines, "Count and skip malformed lines instead of failing");
  app.add_option("--threads", flags->threads, "Parser threads")->check(CLI::Range(1, 256))->capture_default_str();
}

Result<PipelineOptions> ToPipelineOptions(const PipelineFlags& flags) {
  PipelineOptions o;
  FIELDFM_ASSIGN_OR_RETURN(o.format, ParseInputFormat(flags.format));
  o.schema_path = flags.schema;
  o.preset = flags.preset;
  o.field_map_path = flags.field_map;
  o.hash_bits = flags.hash_bits;
  o.hash_seed = flags.hash_seed;
  o.header = !flags.no_header;
  o.map_minus_one = !flags.keep_minus_one;
  return o;
}

ReadOptions ToReadOptions(const PipelineFlags& flags) {
  ReadOptions r;
  r.skip_bad_lines = flags.skip_bad_lines;
  r.threads = flags.threads;
  return r;
}

Result<FeaturePipeline> BuildPipeline(const PipelineFlags& flags, const std::string& fit_path) {
  FIELDFM_ASSIGN_OR_RETURN(PipelineOptions options, ToPipelineOptions(flags));
  FIELDFM_ASSIGN_OR_RETURN(FeaturePipeline pipeline, FeaturePipeline::Create(options));
  if (!fit_path.empty()) FIELDFM_RETURN_IF_ERROR(pipeline.Fit(fit_path, ToReadOptions(flags)));
  return pipeline;
}

}  // namespace fieldfm::cli
