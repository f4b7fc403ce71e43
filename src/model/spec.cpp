#include <array>
#include <utility>

#include "fieldfm/model.h"

namespace fieldfm {
namespace {

template <typename E, size_t N>
using NameTable = std::array<std::pair<E, std::string_view>, N>;

constexpr NameTable<ModelType, 7> kModelNames{{{ModelType::kLr, "lr"},
                                                 {ModelType::kFm, "fm"},
                                                 {ModelType::kFfm, "ffm"},
                                                 {ModelType::kDeepFm, "deepfm"},
                                                 {ModelType::kNfm, "nfm"},
                                                 {ModelType::kDeepFfm, "deepffm"},
                                                 {ModelType::kNffm, "nffm"}}};
constexpr NameTable<Activation, 4> kActivationNames{{{Activation::kRelu, "relu"},
                                                      {Activation::kTanh, "tanh"},
                                                      {Activation::kSigmoid, "sigmoid"},
                                                      {Activation::kIdentity, "identity"}}};
constexpr NameTable<LossType, 3> kLossNames{
    {{LossType::kLogloss, "logloss"}, {LossType::kSquared, "squared"}, {LossType::kRate, "rate"}}};
constexpr NameTable<OptimizerType, 5> kOptimizerNames{{{OptimizerType::kSgd, "sgd"},
                                                        {OptimizerType::kAdaGrad, "adagrad"},
                                                        {OptimizerType::kAdam, "adam"},
                                                        {OptimizerType::kFtrl, "ftrl"},
                                                        {OptimizerType::kRowAdaGrad, "rowwise-adagrad"}}};
constexpr NameTable<UnseenMode, 2> kUnseenNames{{{UnseenMode::kMean, "mean"}, {UnseenMode::kZero, "zero"}}};

template <typename E, size_t N>
std::string_view Lookup(const NameTable<E, N>& table, E e) {
  for (const auto& [v, name] : table)
    if (v == e) return name;
  return "?";
}

template <typename E, size_t N>
Result<E> Parse(const NameTable<E, N>& table, std::string_view s, std::string_view what) {
  std::string choices;
  for (const auto& [v, name] : table) {
    if (name == s) return v;
    choices += (choices.empty() ? "" : "|") + std::string(name);
  }
  return Status::InvalidArgument("unknown " + std::string(what) + " '" + std::string(s) + "' (expected " +
                                 choices + ")");
}

}  // namespace

std::string_view Name(ModelType t) { return Lookup(kModelNames, t); }
std::string_view Name(Activation a) { return Lookup(kActivationNames, a); }
std::string_view Name(LossType l) { return Lookup(kLossNames, l); }
std::string_view Name(OptimizerType o) { return Lookup(kOptimizerNames, o); }
std::string_view Name(UnseenMode u) { return Lookup(kUnseenNames, u); }
Result<ModelType> ParseModelType(std::string_view s) { return Parse(kModelNames, s, "model"); }
Result<Activation> ParseActivation(std::string_view s) { return Parse(kActivationNames, s, "activation"); }
Result<LossType> ParseLoss(std::string_view s) { return Parse(kLossNames, s, "loss"); }
Result<OptimizerType> ParseOptimizer(std::string_view s) { return Parse(kOptimizerNames, s, "optimizer"); }
Result<UnseenMode> ParseUnseenMode(std::string_view s) { return Parse(kUnseenNames, s, "unseen mode"); }

nlohmann::json ModelSpec::ToJson() const {
  return nlohmann::json{{"type", Name(type)},
                        {"k", k},
                        {"hidden", hidden},
                        {"activation", Name(activation)},
                        {"dropout", dropout},
                        {"batch_norm", batch_norm},
                        {"mean_pooling", mean_pooling},
                        {"nffm_sum_pairs", nffm_sum_pairs},
                        {"normalize", normalize},
                        {"loss", Name(loss)},
                        {"num_fields", num_fields},
                        {"num_indices", num_indices}};
}

Result<ModelSpec> ModelSpec::FromJson(const nlohmann::json& j) {
  ModelSpec s;
  try {
    FIELDFM_ASSIGN_OR_RETURN(s.type, ParseModelType(j.at("type").get<std::string>()));
    FIELDFM_ASSIGN_OR_RETURN(s.activation, ParseActivation(j.at("activation").get<std::string>()));
    FIELDFM_ASSIGN_OR_RETURN(s.loss, ParseLoss(j.at("loss").get<std::string>()));
    s.k = j.at("k").get<uint32_t>();
    s.hidden = j.at("hidden").get<std::vector<int>>();
    s.dropout = j.at("dropout").get<float>();
    s.batch_norm = j.at("batch_norm").get<bool>();
    s.mean_pooling = j.at("mean_pooling").get<bool>();
    s.nffm_sum_pairs = j.at("nffm_sum_pairs").get<bool>();
    s.normalize = j.at("normalize").get<bool>();
    s.num_fields = j.at("num_fields").get<uint32_t>();
    s.num_indices = j.at("num_indices").get<uint32_t>();
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption(std::string("bad model spec: ") + e.what());
  }
  if (s.k == 0 || s.k > 1024) return Status::Corruption("bad model spec: k out of range");
  for (int h : s.hidden)
    if (h <= 0 || h > 1 << 16) return Status::Corruption("bad model spec: hidden size out of range");
  if (s.num_fields > 1 << 16) return Status::Corruption("bad model spec: too many fields");
  return s;
}

}  // namespace fieldfm
