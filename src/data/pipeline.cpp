// FeaturePipeline: picks the parser for a format and owns the state a model
// file must carry (schema + fitted vocabularies/bins, or a field map).
#include <xxhash.h>

#include <algorithm>
#include <fmt/format.h>
#include <unordered_map>

#include "data/field_map.h"
#include "data/line_parsers.h"
#include "data/parse_util.h"
#include "data/schema.h"
#include "data/text_source.h"
#include "fieldfm/cache.h"
#include "fieldfm/data.h"

namespace fieldfm {

using data::FieldMap;
using data::Schema;
using nlohmann::json;

namespace {

constexpr int kPipelineVersion = 1;

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Guesses libffm vs libsvm from the extension, else from the first data line.
Result<InputFormat> SniffFormat(const std::string& path) {
  std::string_view name = path;
  for (std::string_view z : {".gz", ".zst"}) {
    if (EndsWith(name, z)) name.remove_suffix(z.size());
  }
  for (std::string_view e : {".ffm", ".libffm"}) {
    if (EndsWith(name, e)) return InputFormat::kLibffm;
  }
  for (std::string_view e : {".svm", ".libsvm", ".libfm"}) {
    if (EndsWith(name, e)) return InputFormat::kLibsvm;
  }
  if (EndsWith(name, ".csv") || EndsWith(name, ".tsv")) {
    return Status::InvalidArgument(path + ": CSV/TSV input needs a schema (--schema) or a preset (--preset)");
  }
  data::ChunkReader reader(1 << 16);
  FIELDFM_RETURN_IF_ERROR(reader.Open(path));
  std::string line;
  for (int tries = 0; tries < 100; ++tries) {
    auto got = reader.ReadLine(&line);
    if (!got.ok()) return got.status();
    if (!*got) break;
    if (data::IsBlank(line)) continue;
    // The second whitespace-separated token is the first feature.
    std::string_view rest = line;
    for (int k = 0; k < 2; ++k) {
      size_t b = rest.find_first_not_of(" \t");
      if (b == std::string_view::npos) {
        rest = {};
        break;
      }
      rest.remove_prefix(b);
      if (k == 0) rest.remove_prefix(std::min(rest.size(), rest.find_first_of(" \t")));
    }
    std::string_view tok = rest.substr(0, rest.find_first_of(" \t"));
    auto colons = std::count(tok.begin(), tok.end(), ':');
    if (colons == 2) return InputFormat::kLibffm;
    if (colons == 1) return InputFormat::kLibsvm;
    break;
  }
  return Status::InvalidArgument(path + ": cannot tell the input format; pass --format (libffm, libsvm, csv, tsv)");
}

}  // namespace

Result<InputFormat> ParseInputFormat(std::string_view name) {
  if (name == "auto" || name.empty()) return InputFormat::kAuto;
  if (name == "libffm" || name == "ffm") return InputFormat::kLibffm;
  if (name == "libsvm" || name == "libfm" || name == "svm") return InputFormat::kLibsvm;
  if (name == "csv") return InputFormat::kCsv;
  if (name == "tsv") return InputFormat::kTsv;
  return Status::InvalidArgument("unknown format '" + std::string(name) + "' (auto, libffm, libsvm, csv, tsv)");
}

const char* InputFormatName(InputFormat format) {
  switch (format) {
    case InputFormat::kAuto: return "auto";
    case InputFormat::kLibffm: return "libffm";
    case InputFormat::kLibsvm: return "libsvm";
    case InputFormat::kCsv: return "csv";
    case InputFormat::kTsv: return "tsv";
  }
  return "auto";
}

struct FeaturePipeline::Impl {
  InputFormat format = InputFormat::kAuto;
  int hash_bits = 22;
  uint64_t hash_seed = 0;
  bool map_minus_one = true;
  std::string preset;
  // Immutable once built; sources and copies share them.
  std::shared_ptr<const Schema> schema;
  std::shared_ptr<const FieldMap> field_map;
  std::unordered_map<std::string, size_t> column_index;  // schema column name -> position

  void IndexColumns() {
    column_index.clear();
    if (!schema) return;
    for (size_t i = 0; i < schema->columns.size(); ++i) column_index.emplace(schema->columns[i].name, i);
  }
  char Delimiter() const {
    if (schema && !schema->delimiter.empty()) return schema->delimiter[0];
    return format == InputFormat::kTsv ? '\t' : ',';
  }
  // Reads the header (when the schema says there is one) and builds the parser.
  Result<std::unique_ptr<data::ChunkParser>> MakeParser(const std::string& path, const ReadOptions& read,
                                                        data::ChunkReader* reader) const;
};

FeaturePipeline::FeaturePipeline() : impl_(std::make_unique<Impl>()) {}
FeaturePipeline::~FeaturePipeline() = default;
FeaturePipeline::FeaturePipeline(FeaturePipeline&&) noexcept = default;
FeaturePipeline& FeaturePipeline::operator=(FeaturePipeline&&) noexcept = default;
FeaturePipeline::FeaturePipeline(const FeaturePipeline& o) : impl_(std::make_unique<Impl>(*o.impl_)) {}
FeaturePipeline& FeaturePipeline::operator=(const FeaturePipeline& o) {
  if (this != &o) impl_ = std::make_unique<Impl>(*o.impl_);
  return *this;
}

Result<FeaturePipeline> FeaturePipeline::Create(const PipelineOptions& options) {
  if (options.hash_bits < 1 || options.hash_bits > 30) {
    return Status::InvalidArgument("hash bits must be in [1, 30], got " + std::to_string(options.hash_bits));
  }
  FeaturePipeline p;
  Impl& impl = *p.impl_;
  impl.format = options.format;
  impl.hash_bits = options.hash_bits;
  impl.hash_seed = options.hash_seed;
  impl.map_minus_one = options.map_minus_one;
  impl.preset = options.preset;
  const bool has_schema = !options.preset.empty() || !options.schema_path.empty();
  if (!options.preset.empty() && !options.schema_path.empty()) {
    return Status::InvalidArgument("give either a schema or a preset, not both");
  }
  if (has_schema) {
    if (options.format == InputFormat::kLibffm || options.format == InputFormat::kLibsvm) {
      return Status::InvalidArgument(std::string("a schema/preset describes CSV/TSV input, not ") +
                                     InputFormatName(options.format));
    }
    if (!options.field_map_path.empty()) return Status::InvalidArgument("a field map is for libsvm input only");
    auto schema = options.preset.empty() ? Schema::FromFile(options.schema_path) : Schema::Preset(options.preset);
    if (!schema.ok()) return schema.status();
    Schema s = std::move(schema).value();
    if (!options.header && options.preset.empty()) s.header = false;
    if (s.delimiter.empty() && options.format == InputFormat::kTsv) s.delimiter = "\t";
    if (s.delimiter.empty() && options.format == InputFormat::kCsv) s.delimiter = ",";
    if (s.delimiter.empty()) {
      const std::string& sp = options.schema_path;
      s.delimiter = EndsWith(sp, ".tsv.toml") || EndsWith(sp, ".tsv.json") ? "\t" : ",";
    }
    impl.format = s.delimiter == "\t" ? InputFormat::kTsv : InputFormat::kCsv;
    s.hash_bits = options.hash_bits;
    s.hash_seed = options.hash_seed;
    s.map_minus_one = options.map_minus_one;
    FIELDFM_RETURN_IF_ERROR(s.Finalize());
    impl.schema = std::make_shared<const Schema>(std::move(s));
    impl.IndexColumns();
    return p;
  }
  if (options.format == InputFormat::kCsv || options.format == InputFormat::kTsv) {
    return Status::InvalidArgument("CSV/TSV input needs a schema (--schema) or a preset (--preset)");
  }
  if (!options.field_map_path.empty()) {
    if (options.format == InputFormat::kLibffm) {
      return Status::InvalidArgument("a field map is for libsvm input; libffm lines carry their fields");
    }
    auto m = FieldMap::FromFile(options.field_map_path);
    if (!m.ok()) return m.status();
    impl.field_map = std::make_shared<const FieldMap>(std::move(m).value());
    impl.format = InputFormat::kLibsvm;
  }
  return p;
}

Result<std::unique_ptr<data::ChunkParser>> FeaturePipeline::Impl::MakeParser(const std::string& path,
                                                                              const ReadOptions& read,
                                                                              data::ChunkReader* reader) const {
  using Ptr = std::unique_ptr<data::ChunkParser>;
  if (format == InputFormat::kLibffm || format == InputFormat::kLibsvm) {
    return Ptr(new data::SparseChunkParser(path, read, format == InputFormat::kLibffm, field_map.get(),
                                           map_minus_one));
  }
  const char delim = Delimiter();
  std::vector<int> schema_to_file;
  size_t file_columns = schema->columns.size();
  if (schema->header) {
    std::string header;
    auto got = reader->ReadLine(&header);
    if (!got.ok()) return got.status();
    if (!*got) return Status::DataError(path + ": empty file (no header)");
    Status st = data::MapHeader(*schema, header, delim, &schema_to_file, &file_columns);
    if (!st.ok()) return Status(st).WithContext(path + ":1");
  } else {
    for (size_t i = 0; i < schema->columns.size(); ++i) schema_to_file.push_back(static_cast<int>(i));
  }
  return Ptr(new data::CsvChunkParser(path, read, schema.get(), delim, std::move(schema_to_file), file_columns));
}

Status FeaturePipeline::Fit(const std::string& train_path, const ReadOptions& read) {
  if (IsCacheFile(train_path)) return FitFromCache(train_path);
  if (impl_->format == InputFormat::kAuto) {
    FIELDFM_ASSIGN_OR_RETURN(impl_->format, SniffFormat(train_path));
  }
  if (!impl_->schema || !impl_->schema->NeedsFit()) return Status::Ok();
  Schema fitted = *impl_->schema;
  data::ChunkReader reader;
  FIELDFM_RETURN_IF_ERROR(reader.Open(train_path));
  auto parser = impl_->MakeParser(train_path, read, &reader);
  if (!parser.ok()) return parser.status();
  // Parse with the unfitted schema too: that validates every line (so Fit
  // fails on the same bad lines reading would) and gives the cells.
  auto* csv = static_cast<data::CsvChunkParser*>(parser->get());
  std::unique_ptr<data::FitAccumulator, void (*)(data::FitAccumulator*)> acc(fitted.NewAccumulator(),
                                                                            &Schema::DeleteAccumulator);
  data::Chunk chunk;
  std::vector<Feature> scratch;
  std::string err;
  uint64_t rows = 0;
  for (;;) {
    auto got = reader.Next(&chunk);
    if (!got.ok()) return got.status();
    if (!*got) break;
    std::string_view text = chunk.text;
    uint64_t line_no = chunk.first_line;
    while (!text.empty()) {
      size_t nl = text.find('\n');
      std::string_view line = data::StripCr(text.substr(0, nl));
      text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
      if (!data::IsBlank(line)) {
        scratch.clear();
        float label, weight;
        if (csv->ParseLine(line, &label, &weight, &scratch, &err)) {
          fitted.Accumulate(acc.get(), csv->LastCells());
          ++rows;
        } else if (!read.skip_bad_lines) {
          return Status::DataError(train_path + ":" + std::to_string(line_no) + ": " + err);
        }
      }
      ++line_no;
    }
  }
  if (rows == 0) return Status::DataError(train_path + ": empty file (no examples)");
  fitted.FinishFit(acc.get());
  FIELDFM_RETURN_IF_ERROR(fitted.Finalize());
  impl_->schema = std::make_shared<const Schema>(std::move(fitted));
  impl_->IndexColumns();
  return Status::Ok();
}

// A binary cache holds no text to sniff or fit on, only its pipeline's
// fingerprint. With --format auto, the sparse format whose pipeline (these
// flags otherwise) has that fingerprint is the one it was built with.
Status FeaturePipeline::FitFromCache(const std::string& path) {
  if (impl_->schema && impl_->schema->NeedsFit() && !impl_->schema->fitted)
    return Status::InvalidArgument(path + ": a binary cache cannot fit the schema's vocabulary/quantile columns; "
                                          "train on the text file");
  if (impl_->format != InputFormat::kAuto) return Status::Ok();  // Open checks the fingerprint
  FIELDFM_ASSIGN_OR_RETURN(CacheInfo info, ReadCacheInfo(path));
  for (InputFormat f : {InputFormat::kLibffm, InputFormat::kLibsvm}) {
    impl_->format = f;
    if (Fingerprint() == info.key.fingerprint) return Status::Ok();
  }
  impl_->format = InputFormat::kAuto;
  return Status::InvalidArgument(
      path + ": a fieldfm cache built by another feature pipeline than libffm or libsvm input with these flags; "
             "pass the --format/--schema/hash flags it was built with, or the text file");
}

Result<std::unique_ptr<ExampleSource>> FeaturePipeline::Open(const std::string& path, const ReadOptions& read) const {
  // A binary cache (`fieldfm cache`) is read as it is, if it was encoded by
  // this same pipeline: its indices would mean other features otherwise.
  if (IsCacheFile(path)) {
    FIELDFM_ASSIGN_OR_RETURN(CacheInfo info, ReadCacheInfo(path));
    if (info.key.fingerprint != Fingerprint())
      return Status::InvalidArgument(fmt::format(
          "{}: a fieldfm cache encoded by another feature pipeline (fingerprint {:016x}, this one {:016x}): "
          "rebuild it with `fieldfm cache` and the same format/schema/hash flags, or pass the text file",
          path, info.key.fingerprint, Fingerprint()));
    FIELDFM_ASSIGN_OR_RETURN(std::unique_ptr<CacheSource> cache, CacheSource::Open(path));
    return std::unique_ptr<ExampleSource>(std::move(cache));
  }
  // Sources keep their own reference to the (immutable) state.
  auto impl = std::make_shared<Impl>(*impl_);
  if (impl->format == InputFormat::kAuto) {
    FIELDFM_ASSIGN_OR_RETURN(impl->format, SniffFormat(path));
  }
  if (impl->schema && impl->schema->NeedsFit() && !impl->schema->fitted) {
    return Status::InvalidArgument("the schema has vocabulary/quantile columns: Fit() the pipeline on training data first");
  }
  if (read.threads < 1 || read.threads > 256) return Status::InvalidArgument("threads must be in [1, 256]");
  auto factory = [impl, path, read](data::ChunkReader* reader) { return impl->MakeParser(path, read, reader); };
  auto src = data::TextSource::Open(path, read, std::move(factory));
  if (!src.ok()) return src.status();
  return std::unique_ptr<ExampleSource>(std::move(src).value());
}

Status FeaturePipeline::EncodeTokens(std::string_view tokens, std::vector<Feature>* out) const {
  out->clear();
  const Impl& impl = *impl_;
  std::string err;
  float label = 0, weight = 1;
  if (impl.schema) {
    // A delimited row in the schema's column order (label cells may be empty).
    std::vector<std::string_view> cells;
    std::string scratch;
    if (!data::SplitCells(data::StripCr(tokens), impl.Delimiter(), &cells, &scratch)) {
      return Status::DataError("unterminated or misplaced quote " + data::QuoteToken(tokens));
    }
    if (cells.size() != impl.schema->columns.size()) {
      return Status::DataError("expected " + std::to_string(impl.schema->columns.size()) + " columns, found " +
                               std::to_string(cells.size()) + " " + data::QuoteToken(tokens));
    }
    if (!impl.schema->EncodeRow(cells.data(), &label, &weight, out, &err, /*need_label=*/false)) {
      return Status::DataError(err);
    }
    return Status::Ok();
  }
  // A bare label (first token without ':') is allowed and skipped.
  std::string_view t = tokens.substr(std::min(tokens.size(), tokens.find_first_not_of(" \t")));
  std::string_view first = t.substr(0, t.find_first_of(" \t"));
  bool has_label = !first.empty() && first.find(':') == std::string_view::npos;
  InputFormat f = impl.format;
  if (f == InputFormat::kAuto) {
    std::string_view probe = has_label ? t.substr(first.size()) : t;
    probe = probe.substr(std::min(probe.size(), probe.find_first_not_of(" \t")));
    probe = probe.substr(0, probe.find_first_of(" \t"));
    f = std::count(probe.begin(), probe.end(), ':') == 2 ? InputFormat::kLibffm : InputFormat::kLibsvm;
  }
  if (!data::ParseSparseLine(data::StripCr(tokens), f == InputFormat::kLibffm, impl.field_map.get(),
                             impl.map_minus_one, has_label, &label, &weight, out, &err)) {
    return Status::DataError(err);
  }
  return Status::Ok();
}

Status FeaturePipeline::EncodeJson(const json& instance, std::vector<Feature>* out, size_t* ignored) const {
  out->clear();
  const Impl& impl = *impl_;
  if (!impl.schema) {
    if (!instance.is_string()) {
      return Status::InvalidArgument("instance must be a string of feature tokens, e.g. \"3:17:1 5:9:1\"");
    }
    return EncodeTokens(instance.get_ref<const std::string&>(), out);
  }
  if (!instance.is_object()) return Status::InvalidArgument("instance must be a JSON object of column values");
  const Schema& schema = *impl.schema;
  std::vector<std::string> values(schema.columns.size());
  for (auto it = instance.begin(); it != instance.end(); ++it) {
    auto col = impl.column_index.find(it.key());
    if (col == impl.column_index.end()) {
      if (ignored != nullptr) ++*ignored;
      continue;
    }
    const data::ColumnSpec& c = schema.columns[col->second];
    const json& v = it.value();
    std::string& cell = values[col->second];
    auto scalar = [](const json& x, std::string* s) {
      if (x.is_string()) {
        *s = x.get<std::string>();
      } else if (x.is_number()) {
        *s = x.dump();
      } else {
        return x.is_null();
      }
      return true;
    };
    if (v.is_array() && !c.multi_delimiter.empty()) {
      for (const auto& e : v) {
        std::string s;
        if (!scalar(e, &s) || e.is_null()) {
          return Status::InvalidArgument("column '" + it.key() + "': array items must be strings or numbers");
        }
        if (!cell.empty()) cell.push_back(c.multi_delimiter[0]);
        cell += s;
      }
    } else if (!scalar(v, &cell)) {
      return Status::InvalidArgument("column '" + it.key() + "': expected a string, number or null, got " +
                                     std::string(v.type_name()));
    }
  }
  std::vector<std::string_view> cells(values.begin(), values.end());
  std::string err;
  float label = 0, weight = 1;
  if (!schema.EncodeRow(cells.data(), &label, &weight, out, &err, /*need_label=*/false)) {
    return Status::DataError(err);
  }
  return Status::Ok();
}

uint32_t FeaturePipeline::num_fields() const {
  if (impl_->schema) return static_cast<uint32_t>(impl_->schema->fields().size());
  if (impl_->field_map) return impl_->field_map->num_fields();
  return 0;
}

std::vector<std::string> FeaturePipeline::field_names() const {
  if (impl_->schema) return impl_->schema->fields();
  std::vector<std::string> names;
  if (impl_->field_map) {
    for (const auto& r : impl_->field_map->ranges()) names.push_back(r.name);
  }
  return names;
}

uint64_t FeaturePipeline::index_space() const {
  if (impl_->schema) return impl_->schema->index_space();
  if (impl_->field_map) return impl_->field_map->index_space();
  return 0;
}

InputFormat FeaturePipeline::format() const { return impl_->format; }

std::string FeaturePipeline::ToJson() const {
  const Impl& impl = *impl_;
  json j = {{"fieldfm_pipeline", kPipelineVersion},
            {"format", InputFormatName(impl.format)},
            {"hash_bits", impl.hash_bits},
            {"hash_seed", impl.hash_seed},
            {"map_minus_one", impl.map_minus_one}};
  if (!impl.preset.empty()) j["preset"] = impl.preset;
  if (impl.schema) j["schema"] = impl.schema->ToJsonValue();
  if (impl.field_map) j["field_map"] = impl.field_map->ToJsonValue();
  return j.dump();
}

Result<FeaturePipeline> FeaturePipeline::FromJson(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status::Corruption("pipeline: not a JSON object");
  auto it = j.find("fieldfm_pipeline");
  if (it == j.end() || !it->is_number_integer() || it->get<int>() != kPipelineVersion) {
    return Status::Corruption("pipeline: missing or unsupported \"fieldfm_pipeline\" version");
  }
  FeaturePipeline p;
  Impl& impl = *p.impl_;
  auto get = [&j](const char* key, auto* out) {
    auto f = j.find(key);
    if (f == j.end()) return false;
    try {
      *out = f->get<std::decay_t<decltype(*out)>>();
    } catch (const json::exception&) {
      return false;
    }
    return true;
  };
  std::string format;
  if (!get("format", &format) || !get("hash_bits", &impl.hash_bits) || !get("hash_seed", &impl.hash_seed) ||
      !get("map_minus_one", &impl.map_minus_one)) {
    return Status::Corruption("pipeline: missing format/hash_bits/hash_seed/map_minus_one");
  }
  auto f = ParseInputFormat(format);
  if (!f.ok()) return Status::Corruption("pipeline: " + f.status().message());
  impl.format = *f;
  get("preset", &impl.preset);
  if (j.contains("schema")) {
    auto s = Schema::FromJsonValue(j["schema"], /*with_state=*/true);
    if (!s.ok()) return Status::Corruption("pipeline: " + s.status().message());
    Status st = s->Finalize();
    if (!st.ok()) return Status::Corruption("pipeline: " + st.message());
    impl.schema = std::make_shared<const Schema>(std::move(s).value());
    impl.IndexColumns();
  }
  if (j.contains("field_map")) {
    auto m = FieldMap::FromJsonValue(j["field_map"]);
    if (!m.ok()) return Status::Corruption("pipeline: " + m.status().message());
    impl.field_map = std::make_shared<const FieldMap>(std::move(m).value());
  }
  return p;
}

uint64_t FeaturePipeline::Fingerprint() const {
  std::string s = ToJson();
  return XXH64(s.data(), s.size(), 0);
}

}  // namespace fieldfm
