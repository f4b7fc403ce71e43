#include "model/network.h"

#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "util/mix.h"
#include "util/prefetch.h"

namespace fieldfm {

namespace {


// Deterministic uniform stream per (seed, parameter name).
class InitRng {
 public:
  InitRng(uint64_t seed, const std::string& name) : s_(Mix64(seed)) {
    for (char c : name) s_ = Mix64(s_ ^ uint8_t(c));
  }
  float Uniform(float lo, float hi) {
    s_ = Mix64(s_);
    return lo + (hi - lo) * float(double(s_ >> 11) * 0x1.0p-53);
  }
  // Element i of the stream's counter form: independent of the other
  // elements (no chain through s_), so a big table fills in one vectorised
  // pass. Filling ffm's 2.9M x 39 x 4 weights was 9% of a one-epoch run's
  // profile chained, 2.5% this way.
  float UniformAt(uint64_t i, float lo, float hi) const {
    const uint64_t x = Mix64(s_ + i);
    return lo + (hi - lo) * float(double(x >> 11) * 0x1.0p-53);
  }

 private:
  uint64_t s_;
};

// Initial embedding weights: U(−kEmbeddingInit, kEmbeddingInit). Small, so the
// F(F−1)/2 pair terms of a fresh FFM stay near 0 without instance normalisation.
constexpr float kEmbeddingInit = 0.1f;

}  // namespace

// Creates or checks parameters while the model declarations add blocks.
class GraphBuilder {
 public:
  GraphBuilder(Network* net, ParamStore* store, uint64_t seed) : net_(net), store_(store), seed_(seed) {}

  SparseTable* Table(const std::string& name, uint32_t slots, uint32_t k, float init) {
    auto [it, created] = store_->sparse.try_emplace(name);
    SparseTable& t = it->second;
    if (created) {
      t.rows = store_->num_indices;
      t.slots = slots;
      t.k = k;
      t.state = uint32_t(store_->state);
      t.slot_state = uint32_t(store_->slot_state);
      t.data.assign(t.rows * t.row_stride(), 0.0f);
      if (init > 0) {
        const InitRng rng(seed_, name);
        const uint32_t ss = t.slot_stride();
        float* data = t.data.data();
        for (uint64_t s = 0; s < t.rows * slots; ++s)
          for (uint32_t d = 0; d < k; ++d) data[s * ss + d] = rng.UniformAt(s * k + d, -init, init);
      }
    } else if (t.rows != store_->num_indices || t.slots != slots || t.k != k) {
      Fail(fmt::format("parameter '{}' has shape {}x{}x{}, the model needs {}x{}x{}", name, t.rows, t.slots, t.k,
                       store_->num_indices, slots, k));
    }
    return &t;
  }

  enum class Init { kZero, kOne, kGlorot };
  DenseParam* Dense(const std::string& name, size_t size, Init init, int fan_in = 0, int fan_out = 0,
                    bool trainable = true, bool l2 = false) {
    auto [it, created] = store_->dense.try_emplace(name);
    DenseParam& p = it->second;
    p.trainable = trainable;
    p.l2 = l2;
    if (created) {
      p.w.assign(size, init == Init::kOne ? 1.0f : 0.0f);
      if (init == Init::kGlorot) {
        InitRng rng(seed_, name);
        const float limit = std::sqrt(6.0f / float(fan_in + fan_out));
        for (float& v : p.w) v = rng.Uniform(-limit, limit);
      }
    } else if (p.w.size() != size) {
      Fail(fmt::format("parameter '{}' has {} values, the model needs {}", name, p.w.size(), size));
    }
    return &p;
  }

  int Add(std::unique_ptr<Block> b, std::vector<int> inputs) { return net_->Add(std::move(b), std::move(inputs)); }
  int out_dim(int node) const { return net_->out_dim(node); }
  ParamStore* store() { return store_; }
  const std::string& error() const { return error_; }

 private:
  void Fail(std::string msg) {
    if (error_.empty()) error_ = std::move(msg);
  }
  Network* net_;
  ParamStore* store_;
  uint64_t seed_;
  std::string error_;
};

namespace {

// ---- the seven models, as graphs of blocks -------------------------------

struct Declare {
  const ModelSpec& s;
  GraphBuilder& g;

  int Bias() { return g.Add(MakeBias(g.Dense("bias", 1, GraphBuilder::Init::kZero)), {}); }
  int Linear() { return g.Add(MakeLinear(g.store(), g.Table("linear", 1, 1, 0.0f), s.normalize), {}); }
  int Embedding() {
    return g.Add(MakeEmbeddingPool(g.store(), g.Table("embedding", 1, s.k, kEmbeddingInit), s.mean_pooling), {});
  }
  int FieldAwareEmbedding() {
    return g.Add(MakeFieldAwareEmbedding(g.store(), g.Table("field_aware_embedding", s.num_fields, s.k,
                                                              kEmbeddingInit),
                                         s.mean_pooling),
                 {});
  }
  int Fm(int e) { return g.Add(MakeFmSecondOrder(s.num_fields, s.k, s.normalize), {e}); }
  int Ffm(int e) { return g.Add(MakeFfmSecondOrder(s.num_fields, s.k, s.normalize), {e}); }
  int EmbeddingBiInteraction() {
    return g.Add(MakeEmbeddingBiInteraction(g.store(), g.Table("embedding", 1, s.k, kEmbeddingInit), s.mean_pooling,
                                            s.normalize),
                 {});
  }
  int FieldPairEmbedding() {
    return g.Add(MakeFieldPairEmbedding(g.store(), g.Table("field_aware_embedding", s.num_fields, s.k, kEmbeddingInit),
                                        s.mean_pooling, s.nffm_sum_pairs),
                 {});
  }

  // Dense -> [batch norm] -> activation -> [dropout] per hidden layer, then one linear unit.
  int Mlp(int x) {
    using Init = GraphBuilder::Init;
    int dim = g.out_dim(x);
    for (size_t i = 0; i < s.hidden.size(); ++i) {
      const int h = s.hidden[i];
      const std::string name = fmt::format("mlp{}", i);
      x = g.Add(MakeDense(g.Dense(name + ".w", size_t(dim) * h, Init::kGlorot, dim, h, true, true),
                          g.Dense(name + ".b", h, Init::kZero), dim, h, name),
                {x});
      if (s.batch_norm) {
        const std::string bn = fmt::format("bn{}", i);
        x = g.Add(MakeBatchNorm(g.Dense(bn + ".gamma", h, Init::kOne), g.Dense(bn + ".beta", h, Init::kZero),
                                g.Dense(bn + ".running_mean", h, Init::kZero, 0, 0, false),
                                g.Dense(bn + ".running_var", h, Init::kOne, 0, 0, false), h, bn),
                  {x});
      }
      x = g.Add(MakeActivation(s.activation, h), {x});
      if (s.dropout > 0) x = g.Add(MakeDropout(s.dropout, h, i + 1), {x});
      dim = h;
    }
    return g.Add(MakeDense(g.Dense("mlp_out.w", dim, Init::kGlorot, dim, 1, true, true),
                           g.Dense("mlp_out.b", 1, Init::kZero), dim, 1, "mlp_out"),
                 {x});
  }

  // Returns the node holding the score φ.
  int Model() {
    std::vector<int> terms{Bias(), Linear()};
    switch (s.type) {
      case ModelType::kLr: break;
      case ModelType::kFm: terms.push_back(Fm(Embedding())); break;
      case ModelType::kFfm: terms.push_back(Ffm(FieldAwareEmbedding())); break;
      case ModelType::kDeepFm: {
        const int e = Embedding();
        terms.push_back(Fm(e));
        terms.push_back(Mlp(e));
        break;
      }
      case ModelType::kNfm: terms.push_back(Mlp(EmbeddingBiInteraction())); break;
      case ModelType::kDeepFfm: {
        const int e = FieldAwareEmbedding();
        terms.push_back(Ffm(e));
        terms.push_back(Mlp(e));
        break;
      }
      case ModelType::kNffm: terms.push_back(Mlp(FieldPairEmbedding())); break;
    }
    return g.Add(MakeSum(1), terms);
  }
};

}  // namespace

Result<std::unique_ptr<Network>> Network::Build(const ModelSpec& spec, ParamStore* store, bool use_weights,
                                                uint64_t init_seed) {
  if (spec.num_fields == 0 && spec.has_embeddings())
    return Status::InvalidArgument("the model needs at least one field");
  if (spec.type == ModelType::kNffm && spec.num_fields < 2 && !spec.nffm_sum_pairs)
    return Status::InvalidArgument("nffm needs at least two fields");
  store->num_fields = spec.num_fields;
  store->num_indices = spec.num_indices;
  auto net = std::make_unique<Network>();
  GraphBuilder g(net.get(), store, init_seed);
  const int score = Declare{spec, g}.Model();
  auto loss = std::make_unique<LossBlock>(spec.loss, use_weights);
  net->loss_ = loss.get();
  net->Add(std::move(loss), {score});
  if (!g.error().empty()) return Status::Corruption(g.error());
  for (Node& n : net->nodes_) n.block->Grads(&net->dense_refs_, &net->sparse_refs_);
  if (spec.type == ModelType::kLr || spec.type == ModelType::kFm)
    net->linear_fm_ = std::make_unique<LinearFmStep>(
        &store->dense.at("bias"), &store->sparse.at("linear"),
        spec.type == ModelType::kFm ? &store->sparse.at("embedding") : nullptr, spec.num_fields, spec.normalize,
        spec.mean_pooling, spec.loss, use_weights);
  if (spec.type == ModelType::kFfm && spec.k == 4)
    net->fused_ffm_ = std::make_unique<FusedFfm>(&store->dense.at("bias"), &store->sparse.at("linear"),
                                                 &store->sparse.at("field_aware_embedding"), spec.num_fields,
                                                 spec.normalize, spec.loss, use_weights);
  net->store_ = store;
  return net;
}

bool Network::UseHotRows(std::shared_ptr<const HotIndex> hot) {
  if (!linear_fm_ && !fused_ffm_) return false;
  auto& sparse = store_->sparse;
  SparseTable* emb = fused_ffm_ ? &sparse.at("field_aware_embedding")
                     : sparse.count("embedding") ? &sparse.at("embedding")
                                                 : nullptr;
  hot_rows_ = std::make_unique<HotRows>(std::move(hot), &store_->dense.at("bias"), &sparse.at("linear"), emb);
  if (linear_fm_) linear_fm_->set_hot_rows(hot_rows_.get());
  if (fused_ffm_) fused_ffm_->set_hot_rows(hot_rows_.get());
  return true;
}

bool Network::RedirectHotRows(RedirectedRows* r) {
  // Only where the one-row kernel takes every step: the graph would read a
  // redirect as a weight.
  if (!hot_rows_ || !linear_fm_ || !fused_on_ || linear_fm_->mean_pooled()) return false;
  hot_rows_->linear.set_redirect(r);
  return true;
}

void Network::PullHotRows(std::mutex& mu) {
  if (hot_rows_) hot_rows_->Pull(mu);
}

void Network::MergeHotRows(std::mutex& mu, bool warm) {
  if (hot_rows_) hot_rows_->Merge(mu, warm);
}

int Network::Add(std::unique_ptr<Block> block, std::vector<int> inputs) {
  nodes_.push_back(Node{std::move(block), std::move(inputs), {}, {}});
  return int(nodes_.size()) - 1;
}

void Network::Forward(const BatchView& b, const RunContext& ctx) {
  for (Node& n : nodes_) {
    in_scratch_.clear();
    for (int i : n.inputs) in_scratch_.push_back(&nodes_[i].out);
    n.block->Forward(b, in_scratch_, &n.out, ctx);
  }
}

void Network::Backward(const BatchView& b, const RunContext& ctx) {
  for (Node& n : nodes_) n.grad.setZero(n.out.rows(), n.out.cols());
  for (size_t idx = nodes_.size(); idx-- > 0;) {
    Node& n = nodes_[idx];
    in_scratch_.clear();
    din_scratch_.clear();
    for (int i : n.inputs) {
      in_scratch_.push_back(&nodes_[i].out);
      din_scratch_.push_back(&nodes_[i].grad);
    }
    n.block->Backward(b, in_scratch_, n.out, n.grad, din_scratch_, ctx);
  }
}

void Network::ZeroGrad() {
  for (Node& n : nodes_) n.block->ZeroGrad();
}

namespace {

// Adam on n coordinates: UpdateRow's / UpdateDense's formula, as plain loops
// over separate arrays that the compiler vectorises (the hot loop of the deep
// models: every weight of every touched field-aware row, every dense weight).
void AdamSpan(const OptimizerConfig& c, float lr, float lambda, float bc1, float bc2, float* __restrict w,
              float* __restrict m, float* __restrict v, const float* __restrict grad, size_t n) {
  const float b1 = c.beta1, b2 = c.beta2, eps = c.eps;
  for (size_t i = 0; i < n; ++i) {
    const float g = grad[i] + lambda * w[i];
    m[i] = b1 * m[i] + (1 - b1) * g;
    v[i] = b2 * v[i] + (1 - b2) * g * g;
    w[i] -= lr * (m[i] / bc1) / (std::sqrt(v[i] / bc2) + eps);
  }
}

float BiasCorrection(float beta, uint64_t step) { return float(1 - std::pow(double(beta), double(step ? step : 1))); }

}  // namespace

void Network::Apply(const OptimizerConfig& c, uint64_t step) {
  ApplyDense(c, step);
  ApplySparse(c, step);
}

void Network::ApplyDense(const OptimizerConfig& c, uint64_t step) {
  if (c.dense_type != OptimizerType::kAdam) {
    for (auto& d : dense_refs_) UpdateDense(c, d.param->l2 ? c.lambda_dense : 0.0f, step, d.param, d.grad->data());
    return;
  }
  const float bc1 = BiasCorrection(c.beta1, step), bc2 = BiasCorrection(c.beta2, step);
  for (auto& d : dense_refs_) {
    DenseParam& p = *d.param;
    if (!p.trainable) continue;
    AdamSpan(c, c.dense_lr, p.l2 ? c.lambda_dense : 0.0f, bc1, bc2, p.w.data(), p.s1.data(), p.s2.data(),
             d.grad->data(), p.w.size());
  }
}

void Network::ApplySparse(const OptimizerConfig& c, uint64_t step) {
  if (c.type != OptimizerType::kAdam) {
    for (auto& s : sparse_refs_) {
      SparseTable& t = *s.table;
      const uint32_t ss = t.slot_stride(), k = t.k, width = s.grad->width;
      for (size_t e = 0; e < s.grad->rows.size(); ++e) {
        float* row = t.row(s.grad->rows[e]);
        UpdateRow(c, c.lambda_embedding, step, row, s.grad->values.data() + e * width, t.slots, k, ss,
                  t.slot_states(row));
      }
    }
    return;
  }
  const float bc1 = BiasCorrection(c.beta1, step), bc2 = BiasCorrection(c.beta2, step);
  for (auto& s : sparse_refs_) {
    SparseTable& t = *s.table;
    const uint32_t ss = t.slot_stride(), k = t.k, width = s.grad->width;
    const size_t n = s.grad->rows.size();
    for (size_t e = 0; e < n; ++e) {
      if (e + 1 < n) {  // the row after next is random: start its first lines
        const char* next = reinterpret_cast<const char*>(t.row(s.grad->rows[e + 1]));
        for (int line = 0; line < 8; ++line) PrefetchWrite(next + 64 * line);
      }
      float* row = t.row(s.grad->rows[e]);
      const float* g = s.grad->values.data() + e * width;
      for (uint32_t slot = 0; slot < t.slots; ++slot) {
        float* w = row + size_t(slot) * ss;
        AdamSpan(c, c.lr, c.lambda_embedding, bc1, bc2, w, w + k, w + 2 * k, g + size_t(slot) * k, k);
      }
    }
  }
}

void Network::TrainStep(const BatchView& b, const RunContext& ctx, const OptimizerConfig& c, uint64_t step,
                        std::span<const Feature> next) {
  // The fused kernels update the bias with the sparse optimizer: only when the
  // dense one is the same (the lr/fm/ffm default; row-wise AdaGrad is AdaGrad on dense params).
  const bool same_type =
      c.dense_type == c.type || (c.type == OptimizerType::kRowAdaGrad && c.dense_type == OptimizerType::kAdaGrad);
  const bool one_optimizer = same_type && c.dense_lr == c.lr;
  if (fused_on_ && one_optimizer &&
      ((linear_fm_ && linear_fm_->Step(b, c, step, next, &step_loss_, &step_weight_)) ||
       (fused_ffm_ && fused_ffm_->Step(b, c, step, next, &step_loss_, &step_weight_)))) {
    ++fused_steps_;
    return;
  }
  ZeroGrad();
  Forward(b, ctx);
  Backward(b, ctx);
  if (dense_mutex_) {
    std::lock_guard<std::mutex> lock(*dense_mutex_);
    ApplyDense(c, step);
  } else {
    ApplyDense(c, step);
  }
  ApplySparse(c, step);
  step_loss_ = loss_->loss_sum();
  step_weight_ = loss_->weight_sum();
}

void Network::Predict(const ParamStore& store, const BatchView& b, std::span<float> out) {
  const RunContext ctx{false, 0};
  if (!fused_on_ || (!fused_ffm_ && !linear_fm_)) {
    Forward(b, ctx);
    for (size_t r = 0; r < b.rows; ++r) out[r] = predictions()(r, 0);
    return;
  }
  for (size_t r = 0; r < b.rows; ++r) {
    const auto next = r + 1 < b.rows ? b.row(r + 1) : std::span<const Feature>();
    if (fused_ffm_ ? fused_ffm_->Predict(store, b.row(r), &out[r], next)
                   : linear_fm_->Predict(store, b.row(r), &out[r], next))
      continue;
    Forward(b.slice(r, r + 1), ctx);
    out[r] = predictions()(0, 0);
  }
}

std::vector<DenseGradRef> Network::DenseGrads() { return dense_refs_; }
std::vector<SparseGradRef> Network::SparseGrads() { return sparse_refs_; }

std::string Network::Describe() const {
  std::string out;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    out += fmt::format("{:>2}: {:<22} out {:<6}", i, nodes_[i].block->kind(), nodes_[i].block->out_dim());
    if (!nodes_[i].inputs.empty()) {
      out += " <- ";
      for (size_t j = 0; j < nodes_[i].inputs.size(); ++j) {
        if (j) out += ',';
        out += std::to_string(nodes_[i].inputs[j]);
      }
    }
    out += "\n";
  }
  return out;
}

}  // namespace fieldfm
