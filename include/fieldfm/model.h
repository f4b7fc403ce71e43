// What a model is: its type and the hyperparameters that shape its graph of
// blocks. Parameters themselves live in the model file (see train.h).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fieldfm/status.h"

namespace fieldfm {

enum class ModelType { kLr, kFm, kFfm, kDeepFm, kNfm, kDeepFfm, kNffm };
enum class Activation { kRelu, kTanh, kSigmoid, kIdentity };
// kLogloss: sigmoid link, classification (labels in [0,1]).
// kSquared: identity link, squared error (reported as RMSE).
// kRate:    sigmoid link, squared error, targets are rates in [0,1].
enum class LossType { kLogloss, kSquared, kRate };
// kRowAdaGrad: AdaGrad with one accumulator per slot of k weights (the mean
// of their squared gradients), as FBGEMM/TorchRec's row-wise AdaGrad: 1/k of
// the state, a smaller row to fetch per feature. Dense params use AdaGrad.
enum class OptimizerType { kSgd, kAdaGrad, kAdam, kFtrl, kRowAdaGrad };
// Unseen (or rarer than min_count) feature values at prediction time: the mean
// latent vector of their field's seen values, or zero vectors.
enum class UnseenMode { kMean, kZero };

struct ModelSpec {
  ModelType type = ModelType::kFfm;
  uint32_t k = 4;                  // latent dimension
  std::vector<int> hidden{100};    // MLP hidden sizes (deep models only)
  Activation activation = Activation::kRelu;
  float dropout = 0.0f;            // drop probability after each hidden layer
  bool batch_norm = false;         // after each hidden dense layer, before the activation
  bool mean_pooling = false;       // multi-valued fields: mean instead of sum
  bool nffm_sum_pairs = false;     // nffm: sum the field-pair products instead of concatenating
  bool normalize = true;           // scale FM/FFM pair terms by 1/Σx² per row (libffm's instance normalisation)
  LossType loss = LossType::kLogloss;
  // Set from the training data.
  uint32_t num_fields = 0;
  uint32_t num_indices = 0;

  bool is_deep() const {
    return type == ModelType::kDeepFm || type == ModelType::kNfm || type == ModelType::kDeepFfm ||
           type == ModelType::kNffm;
  }
  bool field_aware() const {
    return type == ModelType::kFfm || type == ModelType::kDeepFfm || type == ModelType::kNffm;
  }
  bool has_embeddings() const { return type != ModelType::kLr; }

  nlohmann::json ToJson() const;
  static Result<ModelSpec> FromJson(const nlohmann::json& j);
};

// Names used on the command line, in config files and in model files.
std::string_view Name(ModelType t);
std::string_view Name(Activation a);
std::string_view Name(LossType l);
std::string_view Name(OptimizerType o);
std::string_view Name(UnseenMode u);
Result<ModelType> ParseModelType(std::string_view s);
Result<Activation> ParseActivation(std::string_view s);
Result<LossType> ParseLoss(std::string_view s);
Result<OptimizerType> ParseOptimizer(std::string_view s);
Result<UnseenMode> ParseUnseenMode(std::string_view s);

}  // namespace fieldfm
