// Model files, determinism, resume, early stopping and unseen values.
#include <gtest/gtest.h>
#include <xxhash.h>
#include <xxh_x86dispatch.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "fieldfm/cache.h"
#include "fieldfm/data.h"
#include "fieldfm/predictor.h"
#include "fieldfm/train.h"
#include "data/cache_format.h"
#include "train/best_snapshot.h"
#include "train/memory_source.h"
#include "train/metrics.h"
#include "train/model_data.h"
#include "train/synthetic.h"

namespace fieldfm {
namespace {

using testing::MakeSynthetic;
namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() / ("fieldfm_train_test_" + std::to_string(::getpid()) + "_" +
                                         std::to_string(counter_++));
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
  static inline int counter_ = 0;
};

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

TrainOptions SmallOptions(ModelType type) {
  TrainOptions o;
  o.model.type = type;
  o.model.k = 4;
  o.model.hidden = {8};
  o.model.dropout = o.model.is_deep() ? 0.1f : 0.0f;
  o.epochs = 2;
  if (o.model.is_deep()) {
    o.optimizer = OptimizerType::kAdam;
    o.lr = 0.005f;
    o.batch_size = 16;
  }
  return o;
}

std::vector<float> Predict(const Model& m, const ExampleBlock& data) {
  std::vector<float> p(data.rows());
  PredictBatch(m, data.view(), p);
  return p;
}

const std::vector<ModelType> kAllModels{ModelType::kLr,     ModelType::kFm,      ModelType::kFfm, ModelType::kDeepFm,
                                        ModelType::kNfm,    ModelType::kDeepFfm, ModelType::kNffm};

TEST(ModelFile, SaveLoadPredictIdenticalForEveryModel) {
  TempDir dir;
  auto train = MakeSynthetic(2000, 5, 8, 1, 2), test = MakeSynthetic(300, 5, 8, 1, 3);
  // Unseen values in the test rows: ids past the training range.
  test.data.features[1].index = 5 * 8 + 3;
  for (ModelType t : kAllModels) {
    TrainOptions o = SmallOptions(t);
    o.model.batch_norm = o.model.is_deep();
    MemorySource src(train.data);
    auto model = Train(o, src, nullptr, R"({"any":"pipeline"})", {});
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    const std::string path = dir / (std::string(Name(t)) + ".model");
    ASSERT_TRUE(SaveModel(**model, path).ok());
    auto loaded = LoadModel(path);
    ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
    EXPECT_EQ(Predict(**model, test.data), Predict(**loaded, test.data)) << Name(t);
    // lr and fm score with the known flags folded into the linear weights.
    EXPECT_EQ((*loaded)->store.known_linear.empty(), t != ModelType::kLr && t != ModelType::kFm) << Name(t);
    EXPECT_EQ(PipelineJsonOf(**loaded), R"({"any":"pipeline"})");
    EXPECT_EQ(SpecOf(**loaded).type, t);
    EXPECT_EQ(ModelMetadata(**loaded)["version"].get<std::string>().size(), 16u);
  }
}

TEST(ModelFile, ConcurrentPredictionsMatchSequentialOnes) {
  auto train = MakeSynthetic(2000, 5, 8, 1, 2), test = MakeSynthetic(2000, 5, 8, 1, 3);
  TrainOptions o = SmallOptions(ModelType::kDeepFfm);
  o.model.batch_norm = true;
  MemorySource src(train.data);
  auto model = Train(o, src, nullptr, "{}", {});
  ASSERT_TRUE(model.ok());
  const std::vector<float> expected = Predict(**model, test.data);
  std::vector<std::vector<float>> got(4, std::vector<float>(test.data.rows()));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 3; ++rep) PredictBatch(**model, test.data.view(), got[t]);
    });
  for (auto& th : threads) th.join();
  for (const auto& g : got) EXPECT_EQ(g, expected);  // same chunking: bit-identical
  // A multi-threaded pass over a source keeps the input order.
  MemorySource test_src(test.data);
  std::vector<float> pred, labels, weights;
  ASSERT_TRUE(PredictSource(**model, test_src, 3, &pred, &labels, &weights).ok());
  // Other chunk boundaries may change the matrix-product kernels, hence the last bits.
  ASSERT_EQ(pred.size(), expected.size());
  for (size_t i = 0; i < pred.size(); ++i) EXPECT_NEAR(pred[i], expected[i], 1e-6) << i;
  EXPECT_EQ(labels, test.data.labels);
}

TEST(Predictor, LoadPredictorServesTheSavedModelAndItsPipeline) {
  TempDir dir;
  PipelineOptions po;
  po.format = InputFormat::kLibffm;
  auto pipeline = FeaturePipeline::Create(po);
  ASSERT_TRUE(pipeline.ok()) << pipeline.status().ToString();
  auto train = MakeSynthetic(1000, 4, 6, 1, 2), test = MakeSynthetic(200, 4, 6, 1, 3);
  MemorySource src(train.data);
  auto model = Train(SmallOptions(ModelType::kFfm), src, nullptr, pipeline->ToJson(), {});
  ASSERT_TRUE(model.ok());
  ASSERT_TRUE(SaveModel(**model, dir / "m").ok());
  auto predictor = LoadPredictor(dir / "m");
  ASSERT_TRUE(predictor.ok()) << predictor.status().ToString();
  const Predictor& p = **predictor;
  std::vector<float> out(test.data.rows());
  p.Predict(test.data.view(), out);
  EXPECT_EQ(out, Predict(**model, test.data));
  EXPECT_EQ(p.pipeline().format(), InputFormat::kLibffm);
  EXPECT_EQ(p.Metadata()["model"], "ffm");
  EXPECT_EQ(p.Version(), p.Metadata()["version"].get<std::string>());
  // Another model, another version.
  MemorySource src2(test.data);
  auto other = Train(SmallOptions(ModelType::kFfm), src2, nullptr, pipeline->ToJson(), {});
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(SaveModel(**other, dir / "m2").ok());
  auto p2 = LoadPredictor(dir / "m2");
  ASSERT_TRUE(p2.ok());
  EXPECT_NE((*p2)->Version(), p.Version());
  WriteBytes(dir / "bad", "not a model");
  EXPECT_FALSE(LoadPredictor(dir / "bad").ok());
}

TEST(ModelFile, BadFilesGiveClearErrors) {
  TempDir dir;
  auto train = MakeSynthetic(500, 4, 6, 1, 2);
  MemorySource src(train.data);
  auto model = Train(SmallOptions(ModelType::kFfm), src, nullptr, "{}", {});
  ASSERT_TRUE(model.ok());
  const std::string good = dir / "good.model";
  ASSERT_TRUE(SaveModel(**model, good).ok());
  const std::string bytes = ReadBytes(good);

  auto expect_error = [&](const std::string& content, const std::string& needle) {
    const std::string p = dir / "bad.model";
    WriteBytes(p, content);
    for (bool map_in_place : {false, true}) {
      auto r = LoadModel(p, map_in_place);
      ASSERT_FALSE(r.ok()) << needle;
      EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
    }
  };
  expect_error("", "not a fieldfm model file");
  expect_error("hello world, not a model at all, clearly", "not a fieldfm model file");
  expect_error(bytes.substr(0, bytes.size() / 2), "truncated");
  expect_error(bytes.substr(0, 40), "truncated");
  std::string flipped = bytes;
  flipped[bytes.size() - 7] ^= 0x20;
  expect_error(flipped, "checksum");
  std::string version = bytes;
  version[8] = 9;
  expect_error(version, "version 9");
  EXPECT_FALSE(LoadModel(dir / "missing.model").ok());
  EXPECT_FALSE(LoadModel(dir / "missing.model", /*map_in_place=*/true).ok());
  EXPECT_FALSE(LoadModel(dir.operator/(""), /*map_in_place=*/true).ok());  // a directory
  // Every truncation point fails cleanly (no crash, no partial model).
  for (size_t n = 0; n < bytes.size(); n += 97) {
    WriteBytes(dir / "cut.model", bytes.substr(0, n));
    EXPECT_FALSE(LoadModel(dir / "cut.model").ok()) << n;
    EXPECT_FALSE(LoadModel(dir / "cut.model", /*map_in_place=*/true).ok()) << n;
  }
}

// Rebuilds a model file's bytes without its "pad/" sections: the layout of
// files written before sparse tables were aligned for in-place loading.
std::string WithoutPadSections(const std::string& bytes) {
  std::string payload;
  for (size_t pos = 32; pos < bytes.size();) {
    uint32_t len;
    uint64_t size;
    std::memcpy(&len, bytes.data() + pos, 4);
    std::memcpy(&size, bytes.data() + pos + 4 + len, 8);
    const size_t end = pos + 4 + len + 8 + size;
    if (bytes.compare(pos + 4, 4, "pad/") != 0) payload += bytes.substr(pos, end - pos);
    pos = end;
  }
  std::string out = bytes.substr(0, 32) + payload;
  const uint64_t n = payload.size(), digest = XXH3_64bits(payload.data(), payload.size());
  std::memcpy(out.data() + 16, &n, 8);
  std::memcpy(out.data() + 24, &digest, 8);
  return out;
}

// `bytes` with format version `version` and the payload's XXH64 digest in
// its header: what version 1 wrote.
std::string WithXxh64Digest(std::string bytes, uint32_t version) {
  const uint64_t digest = XXH64(bytes.data() + 32, bytes.size() - 32, 0);
  std::memcpy(bytes.data() + 8, &version, 4);
  std::memcpy(bytes.data() + 24, &digest, 8);
  return bytes;
}

TEST(ModelFile, Version1FilesStillLoad) {
  TempDir dir;
  auto train = MakeSynthetic(800, 5, 8, 1, 2), test = MakeSynthetic(200, 5, 8, 1, 3);
  MemorySource src(train.data);
  auto model = Train(SmallOptions(ModelType::kFm), src, nullptr, "{}", {});
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const std::string path = dir / "m.model";
  ASSERT_TRUE(SaveModel(**model, path).ok());
  const std::string bytes = ReadBytes(path);
  uint32_t written;
  std::memcpy(&written, bytes.data() + 8, 4);
  EXPECT_EQ(written, 2u);
  const std::vector<float> expected = Predict(**model, test.data);
  WriteBytes(dir / "v1.model", WithXxh64Digest(bytes, 1));
  WriteBytes(dir / "mislabelled.model", WithXxh64Digest(bytes, 2));
  for (bool map_in_place : {false, true}) {
    auto v1 = LoadModel(dir / "v1.model", map_in_place);
    ASSERT_TRUE(v1.ok()) << v1.status().ToString();
    EXPECT_EQ(Predict(**v1, test.data), expected);
    // The version picks the hash: an XXH64 digest under version 2 does not pass.
    auto mislabelled = LoadModel(dir / "mislabelled.model", map_in_place);
    ASSERT_FALSE(mislabelled.ok());
    EXPECT_NE(mislabelled.status().message().find("checksum"), std::string::npos);
  }
}

TEST(ModelFile, InferenceTablesAreReadInPlaceFromTheFile) {
  TempDir dir;
  auto train = MakeSynthetic(1500, 5, 8, 1, 2), test = MakeSynthetic(300, 5, 8, 1, 3);
  for (ModelType t : {ModelType::kFfm, ModelType::kNffm}) {
    MemorySource src(train.data);
    auto model = Train(SmallOptions(t), src, nullptr, "{}", {});
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    const std::string path = dir / "m.model";
    ASSERT_TRUE(SaveModel(**model, path).ok());
    const std::vector<float> expected = Predict(**model, test.data);
    {
      auto copied = LoadModel(path);  // the default (long-lived processes such as serve): a private copy
      ASSERT_TRUE(copied.ok()) << copied.status().ToString();
      for (const auto& [name, table] : (*copied)->store.sparse) EXPECT_EQ(table.mapped, nullptr) << name;
      EXPECT_EQ(Predict(**copied, test.data), expected) << Name(t);
      auto loaded = LoadModel(path, /*map_in_place=*/true);
      ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
      ASSERT_FALSE((*loaded)->store.sparse.empty());
      for (const auto& [name, table] : (*loaded)->store.sparse) {
        ASSERT_NE(table.mapped, nullptr) << name;
        EXPECT_TRUE(table.data.empty()) << name;
        EXPECT_EQ(reinterpret_cast<uintptr_t>(table.mapped) % 64, 0u) << name;
      }
      // The mapping outlives the file's name: replacing or deleting the file
      // (as a new model is atomically renamed over it) leaves this one intact.
      fs::remove(path);
      EXPECT_EQ(Predict(**loaded, test.data), expected) << Name(t);
    }
    // A file without the alignment padding (older layout) loads by copying.
    ASSERT_TRUE(SaveModel(**model, path).ok());
    const std::string bytes = ReadBytes(path);
    const std::string old_layout = WithoutPadSections(bytes);
    ASSERT_LT(old_layout.size(), bytes.size());
    WriteBytes(dir / "old.model", old_layout);
    auto old = LoadModel(dir / "old.model", /*map_in_place=*/true);
    ASSERT_TRUE(old.ok()) << old.status().ToString();
    EXPECT_EQ(Predict(**old, test.data), expected) << Name(t);
  }
}

TEST(Determinism, OneThreadSameSeedSameBytes) {
  TempDir dir;
  auto train = MakeSynthetic(3000, 5, 8, 1, 2);
  for (ModelType t : {ModelType::kFfm, ModelType::kNffm}) {
    std::string bytes[2];
    for (int run = 0; run < 2; ++run) {
      MemorySource src(train.data);
      auto model = Train(SmallOptions(t), src, nullptr, "{}", {});
      ASSERT_TRUE(model.ok());
      ASSERT_TRUE(SaveModel(**model, dir / "m").ok());
      bytes[run] = ReadBytes(dir / "m");
    }
    EXPECT_TRUE(bytes[0] == bytes[1]) << Name(t);
  }
}

// Training reads a binary cache as views of its blocks and, double-buffered,
// reads the next training block while it trains on this one (views kept for
// two calls). One thread: the same bytes as the rows in memory, with stored
// blocks (333 rows) not aligned to training blocks (500). A view released too
// early would train on another block's rows. Two threads learn as well.
TEST(Determinism, CacheTrainsLikeTheRowsInMemory) {
  TempDir dir;
  auto train = MakeSynthetic(3000, 5, 8, 1, 2);
  MemorySource rows(train.data);
  ASSERT_TRUE(BuildCache(rows, CacheKey{}, dir / "train.bin", /*block_rows=*/333).ok());
  for (ModelType t : {ModelType::kLr, ModelType::kFfm, ModelType::kNffm}) {
    TrainOptions o = SmallOptions(t);
    o.block_rows = 500;
    std::string bytes[2];
    for (int from_cache = 0; from_cache < 2; ++from_cache) {
      MemorySource memory(train.data);
      auto cache = OpenCache(dir / "train.bin");
      ASSERT_TRUE(cache.ok());
      ExampleSource& src = from_cache ? static_cast<ExampleSource&>(**cache) : memory;
      auto model = Train(o, src, nullptr, "{}", {});
      ASSERT_TRUE(model.ok()) << model.status().ToString();
      ASSERT_TRUE(SaveModel(**model, dir / "m").ok());
      bytes[from_cache] = ReadBytes(dir / "m");
    }
    EXPECT_TRUE(bytes[0] == bytes[1]) << Name(t);

    o.threads = 2;
    auto cache = OpenCache(dir / "train.bin");
    ASSERT_TRUE(cache.ok());
    auto two = Train(o, **cache, nullptr, "{}", {});
    ASSERT_TRUE(two.ok()) << two.status().ToString();
    auto one = LoadModel(dir / "m");
    ASSERT_TRUE(one.ok());
    const double one_loss = ComputeMetrics(Predict(**one, train.data), train.data.labels, {}, Task::kClassification).logloss;
    const double two_loss = ComputeMetrics(Predict(**two, train.data), train.data.labels, {}, Task::kClassification).logloss;
    EXPECT_NEAR(two_loss, one_loss, 0.02) << Name(t);
  }
}

TEST(Checkpoint, ResumeEqualsUninterruptedRun) {
  TempDir dir;
  auto train = MakeSynthetic(3000, 5, 8, 1, 2), valid = MakeSynthetic(500, 5, 8, 1, 4);
  // Row-wise AdaGrad's per-slot accumulators travel in the checkpoint too.
  for (auto [t, opt] : {std::pair{ModelType::kFfm, OptimizerType::kAdaGrad},
                        std::pair{ModelType::kDeepFfm, OptimizerType::kAdaGrad},
                        std::pair{ModelType::kFfm, OptimizerType::kRowAdaGrad},
                        std::pair{ModelType::kDeepFfm, OptimizerType::kRowAdaGrad}}) {
    SCOPED_TRACE(Name(opt));
    TrainOptions o = SmallOptions(t);
    o.optimizer = opt;
    o.model.batch_norm = o.model.is_deep();
    o.epochs = 4;
    o.auto_stop = true;
    o.patience = 3;
    MemorySource src(train.data), va(valid.data);
    auto full = Train(o, src, &va, "{}", {});
    ASSERT_TRUE(full.ok());
    ASSERT_TRUE(SaveModel(**full, dir / "full").ok());

    TrainOptions first = o;
    first.epochs = 2;
    first.checkpoint_path = dir / "ckpt";
    ASSERT_TRUE(Train(first, src, &va, "{}", {}).ok());
    TrainOptions rest = o;
    rest.resume_path = dir / "ckpt";
    TrainSummary summary;
    auto resumed = Train(rest, src, &va, "{}", {}, &summary);
    ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
    ASSERT_TRUE(SaveModel(**resumed, dir / "resumed").ok());
    EXPECT_EQ(summary.epochs.size(), 4u);  // the history survives the restart
    EXPECT_TRUE(ReadBytes(dir / "full") == ReadBytes(dir / "resumed")) << Name(t);
  }
}

TEST(Checkpoint, ResumeWithAnotherDenseOptimizerIsRefused) {
  TempDir dir;
  auto train = MakeSynthetic(1000, 5, 8, 1, 2);
  TrainOptions o = SmallOptions(ModelType::kNfm);
  o.epochs = 1;
  o.checkpoint_path = dir / "ckpt";
  MemorySource src(train.data);
  auto first = Train(o, src, nullptr, "{}", {});
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(ModelMetadata(**first)["training"]["options"]["dense_optimizer"], "adam");  // the deep default
  TrainOptions rest = o;
  rest.epochs = 2;
  rest.resume_path = dir / "ckpt";
  rest.dense_optimizer = OptimizerType::kAdaGrad;
  auto resumed = Train(rest, src, nullptr, "{}", {});
  ASSERT_FALSE(resumed.ok());
  EXPECT_NE(resumed.status().ToString().find("dense optimizer"), std::string::npos) << resumed.status().ToString();
}

TEST(EarlyStopping, KeepsTheBestEpochsParameters) {
  // Few rows, many values, a large step: validation logloss soon rises.
  auto train = MakeSynthetic(1500, 6, 40, 1, 2), valid = MakeSynthetic(1000, 6, 40, 1, 5);
  TrainOptions o = SmallOptions(ModelType::kFfm);
  o.lr = 0.5f;
  o.lambda = 0;
  o.epochs = 30;
  o.auto_stop = true;
  MemorySource src(train.data), va(valid.data);
  TrainSummary summary;
  std::vector<EpochReport> seen;
  TrainCallbacks cb;
  cb.on_epoch = [&](const EpochReport& r) { seen.push_back(r); };
  auto model = Train(o, src, &va, "{}", cb, &summary);
  ASSERT_TRUE(model.ok());
  ASSERT_TRUE(summary.stopped_early);
  ASSERT_GT(summary.best_epoch, 0);
  ASSERT_EQ(seen.size(), summary.epochs.size());
  const EpochReport& best = summary.epochs[summary.best_epoch - 1];
  const EpochReport& last = summary.epochs.back();
  EXPECT_GT(last.va_logloss, best.va_logloss);
  for (const auto& r : summary.epochs) EXPECT_GE(r.va_logloss, best.va_logloss);
  // The returned model is the best epoch's, not the last one's.
  std::vector<float> pred(valid.data.rows());
  PredictBatch(**model, valid.data.view(), pred);
  const double ll = ComputeMetrics(pred, valid.data.labels, {}, Task::kClassification).logloss;
  EXPECT_NEAR(ll, best.va_logloss, 1e-6);
  EXPECT_TRUE(seen.back().ToJson().contains("va_auc"));
}

// --auto-stop with a validation set whose logloss soon rises (few rows, many
// values, a large step), so the best epoch is not the last.
struct Overfitting {
  testing::Synthetic train = MakeSynthetic(1500, 6, 40, 1, 2), valid = MakeSynthetic(1000, 6, 40, 1, 5);
  TrainOptions Options() const {
    TrainOptions o = SmallOptions(ModelType::kFfm);
    o.lr = 0.5f;
    o.lambda = 0;
    o.epochs = 30;
    o.auto_stop = true;
    return o;
  }
};

std::vector<std::string> FilesIn(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(EarlyStopping, BestWeightsLiveInAFileRemovedAtTheEnd) {
  TempDir dir;
  Overfitting data;
  MemorySource src(data.train.data), va(data.valid.data);
  // Where the snapshot goes: the given path, else beside the checkpoint, else in $TMPDIR.
  const std::string tmpdir = dir / "tmp";
  fs::create_directories(tmpdir);
  const char* old_tmpdir = std::getenv("TMPDIR");
  const std::string saved_tmpdir = old_tmpdir ? old_tmpdir : "";
  ::setenv("TMPDIR", tmpdir.c_str(), 1);
  for (int where = 0; where < 3; ++where) {
    TrainOptions o = data.Options();
    std::string expected;
    if (where == 0) expected = o.best_weights_path = dir / "model.best";
    if (where == 1) expected = (o.checkpoint_path = dir / "ckpt") + ".best";
    TrainCallbacks cb;
    std::vector<std::string> tmp_files;
    int epochs_with_file = 0;
    cb.on_epoch = [&](const EpochReport& r) {
      if (where < 2) {
        epochs_with_file += fs::exists(expected);
      } else {
        tmp_files = FilesIn(tmpdir);
        epochs_with_file += tmp_files.size() == 1;
      }
    };
    TrainSummary summary;
    auto model = Train(o, src, &va, "{}", cb, &summary);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    ASSERT_TRUE(summary.stopped_early);
    // Every epoch after the first best one had its snapshot on disk.
    EXPECT_EQ(epochs_with_file, int(summary.epochs.size())) << where;
    if (where < 2) {
      EXPECT_FALSE(fs::exists(expected)) << where;
    } else {
      ASSERT_EQ(tmp_files.size(), 1u);
      EXPECT_EQ(tmp_files[0].rfind("fieldfm-best-", 0), 0u) << tmp_files[0];
      EXPECT_TRUE(FilesIn(tmpdir).empty());
    }
    // Nothing else left behind (no temporary files of the atomic writes).
    for (const std::string& f : FilesIn(dir / ""))
      EXPECT_TRUE(f == "tmp" || f == "ckpt") << f;
  }
  if (old_tmpdir) {
    ::setenv("TMPDIR", saved_tmpdir.c_str(), 1);
  } else {
    ::unsetenv("TMPDIR");
  }
}

TEST(EarlyStopping, DamagedSnapshotIsAnErrorNamingTheFile) {
  Overfitting data;
  enum Damage { kFlip, kTruncate, kRemove };
  for (bool checkpoint : {false, true})
    for (Damage damage : {kFlip, kTruncate, kRemove}) {
      TempDir dir;
      MemorySource src(data.train.data), va(data.valid.data);
      TrainOptions o = data.Options();
      o.best_weights_path = dir / "model.best";
      if (checkpoint) o.checkpoint_path = dir / "ckpt";
      TrainCallbacks cb;
      // Each snapshot once, just after it is written, so the one read next
      // (by the next checkpoint or by the final restore) is damaged.
      cb.on_epoch = [&](const EpochReport& r) {
        if (!r.best) return;
        std::string bytes = ReadBytes(o.best_weights_path);
        if (damage == kFlip) bytes[bytes.size() / 2] ^= 0x10;
        if (damage == kTruncate) bytes.resize(bytes.size() - 8);
        if (damage == kRemove) {
          fs::remove(o.best_weights_path);
        } else {
          WriteBytes(o.best_weights_path, bytes);
        }
      };
      TrainSummary summary;
      auto model = Train(o, src, &va, "{}", cb, &summary);
      ASSERT_FALSE(model.ok()) << damage << checkpoint << " best " << summary.best_epoch << " of " << summary.epochs.size();
      const std::string msg = model.status().ToString();
      EXPECT_NE(msg.find(o.best_weights_path), std::string::npos) << msg;
      const char* want[] = {"checksum", "truncated", "cannot open"};
      EXPECT_NE(msg.find(want[damage]), std::string::npos) << msg;
      if (checkpoint) {
        EXPECT_NE(msg.find("checkpoint"), std::string::npos) << msg;
      }
      EXPECT_FALSE(fs::exists(o.best_weights_path)) << msg;  // a failed run removes it too
    }
}

TEST(Checkpoint, ResumeAfterTheBestEpochEqualsUninterruptedRun) {
  TempDir dir;
  Overfitting data;
  MemorySource src(data.train.data), va(data.valid.data);
  TrainOptions o = data.Options();
  o.patience = 2;
  TrainSummary full_summary;
  auto full = Train(o, src, &va, "{}", {}, &full_summary);
  ASSERT_TRUE(full.ok());
  ASSERT_TRUE(SaveModel(**full, dir / "full").ok());
  const int best = full_summary.best_epoch;
  ASSERT_TRUE(full_summary.stopped_early);
  ASSERT_EQ(int(full_summary.epochs.size()), best + 2);

  // Interrupted one epoch after the best: the checkpoint must carry the best
  // weights, as its snapshot file is gone once the first run returns.
  TrainOptions first = o;
  first.epochs = best + 1;
  first.checkpoint_path = dir / "ckpt";
  ASSERT_TRUE(Train(first, src, &va, "{}", {}).ok());
  EXPECT_FALSE(fs::exists(dir / "ckpt.best"));
  TrainOptions rest = o;
  rest.resume_path = dir / "ckpt";
  rest.best_weights_path = dir / "rest.best";
  TrainSummary summary;
  auto resumed = Train(rest, src, &va, "{}", {}, &summary);
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  ASSERT_TRUE(SaveModel(**resumed, dir / "resumed").ok());
  EXPECT_EQ(summary.best_epoch, best);
  EXPECT_EQ(summary.epochs.size(), full_summary.epochs.size());
  EXPECT_TRUE(ReadBytes(dir / "full") == ReadBytes(dir / "resumed"));
  EXPECT_FALSE(fs::exists(dir / "rest.best"));
}

TEST(BestSnapshot, RoundTripsWeightsAndRefusesAnotherTagOrShape) {
  TempDir dir;
  auto train = MakeSynthetic(500, 4, 6, 1, 2);
  MemorySource src(train.data);
  TrainOptions o = SmallOptions(ModelType::kFfm);
  o.epochs = 1;
  o.checkpoint_path = dir / "ckpt";
  ASSERT_TRUE(Train(o, src, nullptr, "{}", {}).ok());
  Model m;  // with optimizer state, as during training
  TrainState state;
  ASSERT_TRUE(ReadModelFile(dir / "ckpt", &m, &state).ok());
  ParamStore& store = m.store;
  ASSERT_GT(store.state, 0);
  auto tag = WriteSparseSnapshot(dir / "snap", 3, store);
  ASSERT_TRUE(tag.ok()) << tag.status().ToString();
  const ParamStore before = store;
  for (auto& [name, t] : store.sparse)
    for (float& x : t.data) x += 1;
  // Another tag: a stale file, refused before anything is changed.
  auto stale = RestoreSparseSnapshot(dir / "snap", *tag + 1, &store);
  ASSERT_FALSE(stale.ok());
  EXPECT_NE(stale.ToString().find("stale"), std::string::npos) << stale.ToString();
  ASSERT_TRUE(RestoreSparseSnapshot(dir / "snap", *tag, &store).ok());
  for (const auto& [name, t] : store.sparse) {
    const SparseTable& b = before.sparse.at(name);
    for (uint64_t s = 0; s < t.rows * t.slots; ++s)
      for (uint32_t d = 0; d < t.slot_stride(); ++d) {
        const float want = d < t.k ? b.data[s * t.slot_stride() + d] : b.data[s * t.slot_stride() + d] + 1;
        ASSERT_EQ(t.data[s * t.slot_stride() + d], want) << name << " " << s << " " << d;  // state untouched
      }
  }
  // A model of another shape.
  store.sparse.begin()->second.rows -= 1;
  auto shape = RestoreSparseSnapshot(dir / "snap", *tag, &store);
  ASSERT_FALSE(shape.ok());
  EXPECT_NE(shape.ToString().find(dir / "snap"), std::string::npos) << shape.ToString();
  WriteBytes(dir / "junk", "not a snapshot");
  auto junk = RestoreSparseSnapshot(dir / "junk", *tag, &store);
  ASSERT_FALSE(junk.ok());
  EXPECT_NE(junk.ToString().find("not a snapshot file"), std::string::npos) << junk.ToString();
}

// ---- unseen values ------------------------------------------------------------

ExampleBlock Rows(std::initializer_list<std::vector<Feature>> rows) {
  ExampleBlock b;
  for (const auto& r : rows) b.add(0, 1, r);
  return b;
}

TEST(Unseen, MeanOfTheFieldsSeenVectorsAndZeroLinearWeight) {
  auto train = MakeSynthetic(3000, 4, 6, 1, 2);
  // Index 23 (field 3) appears once: rare under min_count 2.
  const uint32_t kRare = 4 * 6;  // one past field 3's values
  train.data.features[3] = Feature{3, kRare, 1.0f};
  float p_mean = 0, p_zero = 0;
  for (UnseenMode mode : {UnseenMode::kMean, UnseenMode::kZero}) {
    TrainOptions o = SmallOptions(ModelType::kFfm);
    o.model.normalize = false;  // so that a zero vector is exactly an absent feature
    o.min_count = 2;
    o.unseen = mode;
    MemorySource src(train.data);
    auto model = Train(o, src, nullptr, "{}", {});
    ASSERT_TRUE(model.ok());
    const Model& m = **model;
    const SparseTable& t = m.store.sparse.at("field_aware_embedding");
    ASSERT_EQ(m.counts[kRare], 1u);
    // The stored unseen vector of field 2 is the mean over its known values.
    std::vector<double> mean(t.slots * t.k, 0.0);
    int n = 0;
    for (uint32_t j = 0; j < m.spec.num_indices; ++j)
      if (m.field_of[j] == 2 && m.counts[j] >= 2) {
        ++n;
        for (uint32_t d = 0; d < t.slots * t.k; ++d) mean[d] += t.row(j)[d];
      }
    ASSERT_GT(n, 0);
    for (uint32_t d = 0; d < t.slots * t.k; ++d)
      EXPECT_NEAR(t.unseen_row(2)[d], mode == UnseenMode::kMean ? mean[d] / n : 0.0, 1e-5);
    // A never-seen index, an out-of-range index and a rare one predict alike.
    std::vector<Feature> base{{0, 1, 1}, {1, 7, 1}, {2, 13, 1}};
    auto with = [&](Feature f) {
      auto r = base;
      r.push_back(f);
      return r;
    };
    ExampleBlock rows = Rows({with({3, 999999, 1}), with({3, kRare, 1}), base});
    std::vector<float> p(rows.rows());
    PredictBatch(m, rows.view(), p);
    EXPECT_FLOAT_EQ(p[0], p[1]);
    if (mode == UnseenMode::kMean) {
      p_mean = p[0];
    } else {
      p_zero = p[0];
      EXPECT_FLOAT_EQ(p[0], p[2]);  // zero vectors and zero weight: the feature is absent
    }
  }
  EXPECT_GT(std::fabs(p_mean - p_zero), 1e-4);  // the two rules really differ
}

TEST(Export, LatentTsvHasFieldAndFeatureIds) {
  TempDir dir;
  auto train = MakeSynthetic(500, 3, 4, 1, 2);
  MemorySource src(train.data);
  auto model = Train(SmallOptions(ModelType::kFfm), src, nullptr, "{}", {});
  ASSERT_TRUE(model.ok());
  ASSERT_TRUE(ExportLatentTsv(**model, dir / "latent.tsv").ok());
  std::ifstream in(dir / "latent.tsv");
  std::string header, line;
  std::getline(in, header);
  EXPECT_EQ(header, "table\tfield\tfeature\tcount\ttarget_field\tv0\tv1\tv2\tv3");
  size_t lines = 0, unseen = 0;
  while (std::getline(in, line)) {
    ++lines;
    unseen += line.find("\tunseen\t") != std::string::npos;
  }
  EXPECT_EQ(lines, (12 + 3) * 3u);  // (12 values + 3 unseen rows) x 3 target fields
  EXPECT_EQ(unseen, 9u);
}

TEST(PredictSource, StreamsBlocksInInputOrder) {
  auto train = MakeSynthetic(2000, 5, 8, 1, 2), test = MakeSynthetic(70000, 5, 8, 1, 3);
  MemorySource src(train.data);
  auto model = Train(SmallOptions(ModelType::kFfm), src, nullptr, "{}", {});
  ASSERT_TRUE(model.ok());
  MemorySource te(test.data);
  std::vector<float> all, labels;
  ASSERT_TRUE(PredictSource(**model, te, 2, &all, &labels, nullptr).ok());
  ASSERT_EQ(all.size(), test.data.rows());
  std::vector<float> streamed;
  int calls = 0;
  ASSERT_TRUE(PredictSource(**model, te, 2,
                            [&](std::span<const float> p, std::span<const float> l, std::span<const float> w) {
                              EXPECT_EQ(p.size(), l.size());
                              EXPECT_EQ(p.size(), w.size());
                              for (size_t i = 0; i < l.size(); ++i)
                                EXPECT_EQ(l[i], test.data.labels[streamed.size() + i]);
                              streamed.insert(streamed.end(), p.begin(), p.end());
                              ++calls;
                              return Status::Ok();
                            })
                  .ok());
  EXPECT_GE(calls, 3);  // 70k rows arrive in blocks, not all at once
  EXPECT_TRUE(streamed == all);
  // A sink error stops the run and comes back unchanged.
  auto st = PredictSource(**model, te, 1, [](auto, auto, auto) { return Status::IOError("disk full"); });
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.ToString().find("disk full"), std::string::npos);
}

// A binary cache is predicted from views of its mapped blocks: the same
// predictions, labels and weights as the rows read into memory, in order,
// across stored blocks smaller and not aligned to prediction blocks.
TEST(PredictSource, CacheViewsMatchRowsInMemory) {
  TempDir dir;
  auto train = MakeSynthetic(2000, 5, 8, 1, 2), test = MakeSynthetic(70000, 5, 8, 1, 3);
  for (size_t r = 0; r < test.data.rows(); ++r) test.data.weights[r] = 0.5f + float(r % 7);
  MemorySource src(train.data);
  auto model = Train(SmallOptions(ModelType::kFfm), src, nullptr, "{}", {});
  ASSERT_TRUE(model.ok());
  MemorySource te(test.data);
  std::vector<float> pred, labels, weights;
  ASSERT_TRUE(PredictSource(**model, te, 2, &pred, &labels, &weights).ok());
  const std::string cache_path = dir / "test.bin";
  ASSERT_TRUE(te.Rewind().ok());
  ASSERT_TRUE(BuildCache(te, CacheKey{}, cache_path, /*block_rows=*/10000).ok());
  auto cache = OpenCache(cache_path);
  ASSERT_TRUE(cache.ok()) << cache.status().ToString();
  std::vector<float> cpred, clabels, cweights;
  ASSERT_TRUE(PredictSource(**model, **cache, 2, &cpred, &clabels, &cweights).ok());
  EXPECT_TRUE(cpred == pred);
  EXPECT_TRUE(clabels == labels);
  EXPECT_TRUE(cweights == weights);
  EXPECT_EQ(cpred.size(), test.data.rows());
}

// From a binary cache each of three workers predicts whole stored blocks; the
// sink still gets them one call at a time, in input order, a call per block.
// With two damaged blocks the error is the first in input order and the sink
// has seen exactly the blocks before it; a sink error stops the run at once.
TEST(PredictSource, CacheBlocksOnThreeThreadsKeepOrderAndTheFirstError) {
  TempDir dir;
  auto train = MakeSynthetic(2000, 5, 8, 1, 2), test = MakeSynthetic(20000, 5, 8, 1, 3);
  MemorySource src(train.data);
  auto model = Train(SmallOptions(ModelType::kFfm), src, nullptr, "{}", {});
  ASSERT_TRUE(model.ok());
  MemorySource te(test.data);
  std::vector<float> pred;
  ASSERT_TRUE(PredictSource(**model, te, 1, &pred, nullptr, nullptr).ok());
  const std::string path = dir / "test.bin";
  constexpr size_t kBlockRows = 997;  // 21 stored blocks, the last one short
  ASSERT_TRUE(te.Rewind().ok());
  ASSERT_TRUE(BuildCache(te, CacheKey{}, path, kBlockRows).ok());

  std::vector<float> got;
  std::atomic<int> inside{0};
  bool overlapped = false, labels_in_order = true;
  size_t calls = 0;
  const PredictionSink collect = [&](std::span<const float> p, std::span<const float> l, std::span<const float>) {
    if (inside.fetch_add(1) != 0) overlapped = true;
    for (size_t i = 0; i < l.size(); ++i) labels_in_order &= l[i] == test.data.labels[got.size() + i];
    got.insert(got.end(), p.begin(), p.end());
    std::this_thread::yield();  // gives another worker the chance to enter too early
    ++calls;
    inside.fetch_sub(1);
    return Status::Ok();
  };
  {
    auto cache = OpenCache(path);
    ASSERT_TRUE(cache.ok()) << cache.status().ToString();
    ASSERT_EQ((*cache)->num_blocks(), 21u);
    ASSERT_TRUE(PredictSource(**model, **cache, 3, collect).ok());
    EXPECT_FALSE(overlapped);
    EXPECT_TRUE(labels_in_order);
    EXPECT_EQ(calls, 21u);
    EXPECT_TRUE(got == pred);

    calls = 0;
    Status st = PredictSource(**model, **cache, 3, [&](auto, auto, auto) {
      return ++calls == 3 ? Status::IOError("disk full") : Status::Ok();
    });
    EXPECT_NE(st.ToString().find("disk full"), std::string::npos) << st.ToString();
    EXPECT_EQ(calls, 3u);
  }

  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  cache_format::CacheHeader h;
  std::memcpy(&h, bytes.data(), sizeof(h));
  for (const size_t b : {12u, 5u}) {
    cache_format::BlockIndexEntry e;
    std::memcpy(&e, bytes.data() + h.index_offset + b * sizeof(e), sizeof(e));
    bytes[e.offset + cache_format::BlockLayout::For(e.rows, e.features).features] ^= 0x10;  // a feature of block b
  }
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
  }
  auto damaged = OpenCache(path);
  ASSERT_TRUE(damaged.ok()) << damaged.status().ToString();
  got.clear();
  calls = 0;
  Status st = PredictSource(**model, **damaged, 3, collect);
  EXPECT_EQ(st.code(), StatusCode::kCorruption) << st.ToString();
  EXPECT_NE(st.message().find("block 5 "), std::string::npos) << st.message();
  EXPECT_EQ(calls, 5u);
  EXPECT_EQ(got.size(), 5 * kBlockRows);
  EXPECT_FALSE(overlapped);
}

}  // namespace
}  // namespace fieldfm
