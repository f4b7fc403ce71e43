// The in-memory form of a model file (and of a training checkpoint).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fieldfm/model.h"
#include "fieldfm/train.h"
#include "model/network.h"
#include "model/params.h"

namespace fieldfm {

struct Model;

// Reusable inference graphs over one model's parameters, so concurrent
// PredictBatch calls neither share activations nor rebuild graphs.
class NetworkPool {
 public:
  std::unique_ptr<Network> Acquire(const Model& m);
  void Release(std::unique_ptr<Network> n);
  void Clear();

 private:
  std::mutex mu_;
  std::vector<std::unique_ptr<Network>> free_;
};

struct Model {
  ModelSpec spec;
  nlohmann::json training;  // options and summary, for inspect
  std::string pipeline_json;
  ParamStore store;  // weights only (state 0) unless it is a checkpoint
  std::vector<uint32_t> counts;    // occurrences of each index in the training data
  std::vector<uint32_t> field_of;  // field each index was first seen in
  uint32_t min_count = 1;
  UnseenMode unseen = UnseenMode::kMean;
  bool use_weights = false;
  uint64_t checksum = 0;  // of the file's payload; 0 before the first save/load
  std::unique_ptr<NetworkPool> pool = std::make_unique<NetworkPool>();
};

// What a checkpoint adds to a model: where training stands.
struct TrainState {
  int epochs_done = 0;
  int best_epoch = 0;
  double best_score = 0;
  int bad_epochs = 0;
  std::vector<EpochReport> history;
  // The best epoch's weights (auto-stop). The sparse tables' are in a snapshot
  // file (train/best_snapshot.h), not in memory: a second copy of the model.
  // Tag 0: no snapshot written. Dense params (small) are kept here by name.
  std::string best_sparse_path;
  uint64_t best_sparse_tag = 0;
  std::map<std::string, std::vector<float>> best_dense;
};

// Fills store.known from counts and, per table, the unseen vectors: the mean
// of the known rows of each field (mode mean) or zeros. Linear weights of
// unseen values stay 0 (no unseen row).
void ComputeUnseen(Model* model);

// kind: model file (weights only) or checkpoint (optimizer state + TrainState).
// A checkpoint carries the best epoch's sparse weights itself (sections
// best_sparse/<table>, copied from the snapshot file piece by piece), so it
// stays valid once the snapshot is gone. Reading one writes those sections to
// a new snapshot at state->best_sparse_path (which must then be set) and
// sets best_sparse_tag.
Status WriteModelFile(const std::string& path, const Model& model, const TrainState* state);
// map_in_place: the sparse tables of a model file (not a checkpoint) are read
// in place from a private mapping of the file (SparseTable::mapped) instead of
// being copied; see MapFile in model_file.cpp for when that is safe.
Status ReadModelFile(const std::string& path, Model* model, TrainState* state, bool map_in_place = false);

nlohmann::json ReportToJson(const EpochReport& r);
EpochReport ReportFromJson(const nlohmann::json& j);

}  // namespace fieldfm
