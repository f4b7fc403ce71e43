// The production encoder: the model's own feature pipeline. Kept in its own
// object so the server links without the data module until it is needed.
#include "fieldfm/serve.h"

namespace fieldfm {
namespace {

class PipelineEncoder final : public InstanceEncoder {
 public:
  Status Encode(const Predictor& model, const nlohmann::json& instance, std::vector<Feature>* out,
                size_t* ignored_fields, std::string* bad_field) const override {
    if (instance.is_string()) {
      return model.pipeline().EncodeTokens(instance.get_ref<const std::string&>(), out);
    }
    return model.pipeline().EncodeJson(instance, out, ignored_fields);
  }

  Status EncodeTokens(const Predictor& model, std::string_view tokens, std::vector<Feature>* out, size_t*,
                      std::string*) const override {
    return model.pipeline().EncodeTokens(tokens, out);
  }

  // Clients keep sending what the old model took; a model that reads another
  // input format would fail every request, so it is not swapped in.
  Status CheckCompatible(const Predictor& current, const Predictor& next) const override {
    if (current.pipeline().format() != next.pipeline().format()) {
      return Status::InvalidArgument("new model reads another input format than the one being served");
    }
    return Status::Ok();
  }

  nlohmann::json DescribeInput(const Predictor& model) const override {
    const FeaturePipeline& pipeline = model.pipeline();
    nlohmann::json j;
    j["format"] = FormatName(pipeline.format());
    j["num_fields"] = pipeline.num_fields();
    j["field_names"] = pipeline.field_names();
    return j;
  }

 private:
  static const char* FormatName(InputFormat format) {
    switch (format) {
      case InputFormat::kLibffm: return "libffm";
      case InputFormat::kLibsvm: return "libsvm";
      case InputFormat::kCsv: return "csv";
      case InputFormat::kTsv: return "tsv";
      default: return "auto";
    }
  }
};

}  // namespace

std::shared_ptr<const InstanceEncoder> DefaultInstanceEncoder() { return std::make_shared<PipelineEncoder>(); }

}  // namespace fieldfm
