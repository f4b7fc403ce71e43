#include "fieldfm/synth.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <thread>

#include "data/shuffle.h"
#include "data/synth_zipf.h"
#include "util/atomic_file.h"

namespace fieldfm {

namespace {

constexpr uint32_t kNumericBins = 40;
constexpr uint32_t kHidden = 8;          // units of the hidden nonlinear term
constexpr uint32_t kNonlinearFields = 3;
constexpr double kPairDensity = 0.3;     // share of field pairs that interact
constexpr int kCalibrationRows = 20000;
// Standard deviations of the three logit components and the target base rate:
// chosen so the defaults give a Bayes logloss near 0.44 at a ~0.22 click rate.
constexpr double kLinearStd = 0.65, kPairStd = 0.8, kNonlinearStd = 0.4, kBaseRate = 0.22;
constexpr uint32_t kCalibrationSplit = 7;  // a row stream never written

constexpr uint64_t kLinearSalt = 0x6c696e6561720001ULL, kNonlinearSalt = 0x6e6f6e6c696e0002ULL;
constexpr double kSqrt3 = 1.7320508075688772, kLn2 = 0.6931471805599453;

// A 16-bit lane of a hash as a uniform in [-sqrt 3, sqrt 3] (unit variance).
inline float Lane(uint64_t h, int lane) {
  return static_cast<float>((static_cast<double>((h >> (16 * lane)) & 0xffff) + 0.5) * (2.0 * kSqrt3 / 65536.0) - kSqrt3);
}
// A 15-bit lane of a 32-bit hash as an odd integer in [-32767, 32767]; times
// sqrt(3) / 32768 it is uniform with unit variance. Products of two lanes are
// summed as integers (two fit an int32) and scaled once.
inline int32_t Lane15(uint32_t h, uint32_t lane) { return 2 * static_cast<int32_t>((h >> (16 * lane)) & 0x7fff) - 32767; }
// 32-bit bijective mixer (the "lowbias32" constants): vectorises with native 32-bit multiplies.
inline uint32_t Mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}
constexpr double kStrengthQuantum = 256.0;
constexpr double kLane15ProductScale = 3.0 / 32768.0 / 32768.0;

double Sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }

double BinaryEntropy(double p) {
  if (p <= 0 || p >= 1) return 0;
  return -(p * std::log(p) + (1 - p) * std::log(1 - p));
}

// Binomial(n, p) by inversion; expected O(n * min(p, 1 - p)) steps.
uint32_t Binomial(uint32_t n, double p, Rng& rng) {
  if (p <= 0) return 0;
  if (p >= 1) return n;
  if (p > 0.5) return n - Binomial(n, 1 - p, rng);
  const double q = 1 - p, r = p / q;
  double f = std::pow(q, n), u = rng.Uniform();
  uint32_t x = 0;
  while (u >= f && x < n) {
    u -= f;
    ++x;
    f *= r * (n - x + 1) / x;
  }
  return x;
}

struct Components {
  double linear = 0, pair = 0, nonlinear = 0;
};

}  // namespace

Status SynthOptions::Validate() const {
  if (fields < 1 || fields > 10000) return Status::InvalidArgument("--fields must be in [1, 10000]");
  if (numeric > fields) return Status::InvalidArgument("--numeric must not exceed --fields");
  if (k < 1 || k > 64) return Status::InvalidArgument("--k must be in [1, 64]");
  if (!(zipf > 0 && zipf <= 10)) return Status::InvalidArgument("--zipf must be in (0, 10]");
  if (min_cardinality < 1 || max_cardinality < min_cardinality)
    return Status::InvalidArgument("cardinalities need 1 <= min <= --max-cardinality");
  if (max_cardinality > (uint64_t{1} << 31)) return Status::InvalidArgument("--max-cardinality must be <= 2^31");
  if (rows < 1) return Status::InvalidArgument("--rows must be >= 1");
  if (max_impressions < 1) return Status::InvalidArgument("max impressions must be >= 1");
  if (raw_numeric && format != SynthFormat::kCsv) return Status::InvalidArgument("--raw-numeric needs --format csv");
  return Status::Ok();
}

struct SynthModel::Impl {
  SynthOptions opt;
  uint64_t param_seed = 0, row_seed = 0;
  std::vector<uint64_t> card, offset;
  std::vector<double> numeric_rate;  // log2 of a numeric field's counts is rate * Exp(1)
  std::vector<double> linear_weight;
  struct Pair {
    uint32_t f, g;
    float strength;
  };
  std::vector<Pair> pairs;
  // The same pairs as flat arrays for PairTerm.
  std::vector<uint32_t> pair_f, pair_g;
  std::vector<uint32_t> pair_salt_f, pair_salt_g;
  std::vector<int64_t> pair_strength_q;  // strength * kStrengthQuantum
  std::vector<uint32_t> nl_fields;
  std::vector<float> w1, b1, w2;  // kHidden x (nl_fields * k), kHidden, kHidden
  double scale_linear = 1, scale_pair = 1, scale_nonlinear = 1, bias = 0;
  ZipfTable zipf{1.1};
  std::vector<ZipfSampler> samplers;  // per categorical field (numeric ones unused)

  std::vector<uint64_t> field_seed;  // per field, so a value's hash is a single Mix64
  // Distinct ids of a field get distinct hashes (Mix64 is a bijection).
  uint64_t ValueHash(uint32_t f, uint32_t id) const { return Mix64(field_seed[f] + id); }

  // k unit-variance numbers hashed from a value hash (the nonlinear term's inputs).
  void Embedding(uint64_t value_hash, float* out) const {
    const uint32_t k = opt.k;
    for (uint32_t c = 0; c * 4 < k; ++c) {
      uint64_t h = Mix64(value_hash + c);
      for (uint32_t l = 0; l < 4 && c * 4 + l < k; ++l) out[c * 4 + l] = Lane(h, l);
    }
  }

  // Σ strength · <u_{f,x_f,g}, u_{g,x_g,f}> over the interacting pairs.
  // u_{f,id,g} is made of 15-bit lanes, two per 32-bit word; word w is
  // Mix32(high half of ValueHash(f, id) + (g << 8) + w). Written as flat loops
  // over the pair arrays so the compiler vectorises them: the hot loop.
  double PairTerm(const uint64_t* vh) const {
    thread_local std::vector<uint32_t> vh32, ga, gb, ha, hb;
    const size_t np = pair_f.size();
    vh32.resize(opt.fields);
    for (uint32_t f = 0; f < opt.fields; ++f) vh32[f] = static_cast<uint32_t>(vh[f] >> 32);
    ga.resize(np);
    gb.resize(np);
    ha.resize(np);
    hb.resize(np);
    for (size_t p = 0; p < np; ++p) {  // the only gather: once per row, not per word
      ga[p] = vh32[pair_f[p]] + pair_salt_f[p];
      gb[p] = vh32[pair_g[p]] + pair_salt_g[p];
    }
    int64_t total = 0;  // exact; |dot| < 2^31, so dot >> 8 times a strength < 2^9 leaves room for 2^31 terms
    for (uint32_t w = 0; w * 2 < opt.k; ++w) {
      for (size_t p = 0; p < np; ++p) ha[p] = Mix32(ga[p] + w);
      for (size_t p = 0; p < np; ++p) hb[p] = Mix32(gb[p] + w);
      const bool two_lanes = w * 2 + 1 < opt.k;
      for (size_t p = 0; p < np; ++p) {
        int32_t dot = Lane15(ha[p], 0) * Lane15(hb[p], 0);
        if (two_lanes) dot += Lane15(ha[p], 1) * Lane15(hb[p], 1);
        total += pair_strength_q[p] * (dot >> 8);
      }
    }
    return static_cast<double>(total) * (256.0 / kStrengthQuantum) * kLane15ProductScale;
  }

  Components Raw(std::span<const uint32_t> ids) const {
    const uint32_t nf = opt.fields, k = opt.k;
    Components c;
    uint64_t hashes[64];
    std::vector<uint64_t> big;
    uint64_t* vh = hashes;
    if (nf > 64) {
      big.resize(nf);
      vh = big.data();
    }
    for (uint32_t f = 0; f < nf; ++f) {
      vh[f] = ValueHash(f, ids[f]);
      c.linear += linear_weight[f] * Lane(Mix64(vh[f] ^ kLinearSalt), 0);
    }
    c.pair = PairTerm(vh);
    if (!nl_fields.empty()) {
      const uint32_t in = static_cast<uint32_t>(nl_fields.size()) * k;
      float x[kNonlinearFields * 64];
      for (size_t i = 0; i < nl_fields.size(); ++i) Embedding(vh[nl_fields[i]] ^ kNonlinearSalt, &x[i * k]);
      for (uint32_t h = 0; h < kHidden; ++h) {
        float z = b1[h];
        for (uint32_t j = 0; j < in; ++j) z += w1[h * in + j] * x[j];
        c.nonlinear += w2[h] * std::max(z, 0.0f);
      }
    }
    return c;
  }

  double Logit(std::span<const uint32_t> ids) const {
    Components c = Raw(ids);
    return bias + scale_linear * c.linear + scale_pair * c.pair + scale_nonlinear * c.nonlinear;
  }

  void Sample(uint32_t split, uint64_t row, SynthRow* out) const {
    Rng rng(HashCombine(HashCombine(row_seed, split), row));
    out->ids.resize(opt.fields);
    out->raw.resize(opt.numeric);
    for (uint32_t f = 0; f < opt.fields; ++f) {
      if (f < opt.numeric) {
        // A power-law count (log2 of count + 1 is exponential with mean numeric_rate):
        // many zeros, a long tail; binned in half-octaves, bin = floor(2 log2(count + 1)).
        const double x = std::min(std::pow(rng.UniformPositive(), -numeric_rate[f] * kLn2), 0x1.0p50);
        const uint64_t c1 = static_cast<uint64_t>(x);  // count + 1 >= 1
        const uint32_t octave = 63 - __builtin_clzll(c1);
        const bool upper_half = static_cast<unsigned __int128>(c1) * c1 >= (static_cast<unsigned __int128>(1) << (2 * octave + 1));
        out->raw[f] = c1 - 1;
        out->ids[f] = std::min<uint32_t>(kNumericBins - 1, 2 * octave + (upper_half ? 1 : 0));
      } else {
        out->ids[f] = static_cast<uint32_t>(samplers[f].Sample(rng.Uniform()) - 1);
      }
    }
  }
};

SynthModel::SynthModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SynthModel::SynthModel(SynthModel&&) noexcept = default;
SynthModel& SynthModel::operator=(SynthModel&&) noexcept = default;
SynthModel::~SynthModel() = default;

Result<SynthModel> SynthModel::Create(const SynthOptions& options) {
  FIELDFM_RETURN_IF_ERROR(options.Validate());
  auto m = std::make_unique<Impl>();
  m->opt = options;
  m->param_seed = HashCombine(options.seed, 0x706172616d73ULL);
  for (uint32_t f = 0; f < options.fields; ++f) m->field_seed.push_back(HashCombine(m->param_seed, f));
  m->row_seed = HashCombine(options.seed, 0x726f777300ULL);
  m->zipf = ZipfTable(options.zipf);
  const uint32_t nf = options.fields;
  Rng rng(HashCombine(options.seed, 0x6d6f64656cULL));

  // Field structure.
  const double lo = std::log(double(options.min_cardinality)), hi = std::log(double(options.max_cardinality));
  uint64_t total = 0;
  for (uint32_t f = 0; f < nf; ++f) {
    uint64_t c = kNumericBins;
    if (f >= options.numeric) c = std::clamp<uint64_t>(std::llround(std::exp(lo + rng.Uniform() * (hi - lo))),
                                                      options.min_cardinality, options.max_cardinality);
    m->card.push_back(c);
    m->offset.push_back(total);
    total += c;
    m->numeric_rate.push_back(f < options.numeric ? 0.5 + 3.0 * rng.Uniform() : 0.0);
    m->linear_weight.push_back(0.3 + 1.4 * rng.Uniform());  // some fields matter more
    m->samplers.emplace_back(&m->zipf, c);
  }
  if (total > 0xffffffffULL)
    return Status::InvalidArgument("feature index space " + std::to_string(total) +
                                   " exceeds 2^32; lower --fields or --max-cardinality");
  for (uint32_t f = 0; f < nf; ++f)
    for (uint32_t g = f + 1; g < nf; ++g)
      if (rng.Uniform() < kPairDensity) m->pairs.push_back({f, g, static_cast<float>(0.25 + 1.5 * rng.Uniform())});
  if (m->pairs.empty() && nf >= 2) m->pairs.push_back({0, 1, 1.0f});
  for (const auto& p : m->pairs) {
    m->pair_f.push_back(p.f);
    m->pair_g.push_back(p.g);
    m->pair_salt_f.push_back(p.g << 8);
    m->pair_salt_g.push_back(p.f << 8);
    m->pair_strength_q.push_back(std::llround(p.strength * kStrengthQuantum));
  }
  // The nonlinear term reads a few fields chosen by the seed.
  std::vector<uint32_t> perm;
  Permutation(nf, rng.Next(), &perm);
  m->nl_fields.assign(perm.begin(), perm.begin() + std::min<uint32_t>(kNonlinearFields, nf));
  std::sort(m->nl_fields.begin(), m->nl_fields.end());
  const uint32_t in = static_cast<uint32_t>(m->nl_fields.size()) * options.k;
  const double w1_scale = 1.0 / std::sqrt(double(in));
  for (uint32_t i = 0; i < kHidden * in; ++i) m->w1.push_back(static_cast<float>((2 * rng.Uniform() - 1) * kSqrt3 * w1_scale));
  for (uint32_t h = 0; h < kHidden; ++h) m->b1.push_back(static_cast<float>(rng.Uniform() - 0.5));
  for (uint32_t h = 0; h < kHidden; ++h) m->w2.push_back(static_cast<float>(2 * rng.Uniform() - 1));

  // Calibration on a row stream that is never written: scale each component
  // to its target spread, then pick the bias that gives the target base rate.
  std::vector<Components> sample(kCalibrationRows);
  SynthRow row;
  std::array<double, 3> sum{}, sq{};
  for (int i = 0; i < kCalibrationRows; ++i) {
    m->Sample(kCalibrationSplit, i, &row);
    Components c = m->Raw(row.ids);
    sample[i] = c;
    const double v[3] = {c.linear, c.pair, c.nonlinear};
    for (int j = 0; j < 3; ++j) {
      sum[j] += v[j];
      sq[j] += v[j] * v[j];
    }
  }
  auto scale_for = [&](int j, double target) {
    double mean = sum[j] / kCalibrationRows, var = sq[j] / kCalibrationRows - mean * mean;
    return var > 1e-12 ? target / std::sqrt(var) : 0.0;
  };
  m->scale_linear = scale_for(0, kLinearStd);
  m->scale_pair = scale_for(1, kPairStd);
  m->scale_nonlinear = scale_for(2, kNonlinearStd);
  double b_lo = -20, b_hi = 20;
  for (int it = 0; it < 60; ++it) {
    double mid = 0.5 * (b_lo + b_hi), mean = 0;
    for (const Components& c : sample)
      mean += Sigmoid(mid + m->scale_linear * c.linear + m->scale_pair * c.pair + m->scale_nonlinear * c.nonlinear);
    (mean / kCalibrationRows < kBaseRate ? b_lo : b_hi) = mid;
  }
  m->bias = 0.5 * (b_lo + b_hi);
  return SynthModel(std::move(m));
}

const SynthOptions& SynthModel::options() const { return impl_->opt; }
uint32_t SynthModel::num_fields() const { return impl_->opt.fields; }
bool SynthModel::is_numeric(uint32_t field) const { return field < impl_->opt.numeric; }
uint64_t SynthModel::cardinality(uint32_t field) const { return impl_->card[field]; }
uint64_t SynthModel::field_offset(uint32_t field) const { return impl_->offset[field]; }
uint64_t SynthModel::index_space() const { return impl_->offset.back() + impl_->card.back(); }
std::string SynthModel::field_name(uint32_t field) const {
  // Built by appending: g++ 12 warns (-Wrestrict, falsely) on "I" + std::to_string().
  const bool numeric = field < impl_->opt.numeric;
  std::string name(1, numeric ? 'I' : 'C');
  name += std::to_string(numeric ? field + 1 : field - impl_->opt.numeric + 1);
  return name;
}
void SynthModel::SampleRow(uint32_t split, uint64_t row, SynthRow* out) const { impl_->Sample(split, row, out); }
double SynthModel::Logit(std::span<const uint32_t> ids) const { return impl_->Logit(ids); }
double SynthModel::TrueProbability(std::span<const uint32_t> ids) const { return Sigmoid(impl_->Logit(ids)); }

nlohmann::json SynthModel::Describe() const {
  const Impl& m = *impl_;
  nlohmann::json pairs = nlohmann::json::array();
  for (const auto& p : m.pairs) pairs.push_back({p.f, p.g});
  return {{"bias", m.bias},
          {"k", m.opt.k},
          {"linear_scale", m.scale_linear},
          {"pair_scale", m.scale_pair},
          {"nonlinear_scale", m.scale_nonlinear},
          {"nonlinear_fields", m.nl_fields},
          {"nonlinear_hidden", kHidden},
          {"interacting_field_pairs", pairs}};
}

// ---------------------------------------------------------------------------

double MeanLogloss(std::span<const double> probs, std::span<const float> labels) {
  if (probs.empty()) return 0;
  double sum = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    const double p = std::clamp(probs[i], 1e-15, 1 - 1e-15);
    sum -= labels[i] > 0.5f ? std::log(p) : std::log(1 - p);
  }
  return sum / static_cast<double>(probs.size());
}

double RocAuc(std::span<const double> probs, std::span<const float> labels) {
  std::vector<uint32_t> order(probs.size());
  std::iota(order.begin(), order.end(), 0u);
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return probs[a] < probs[b]; });
  double pos = 0, rank_sum = 0;
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j < order.size() && probs[order[j]] == probs[order[i]]) ++j;
    const double mid_rank = 0.5 * (double(i + 1) + double(j));  // ties share their mean rank
    for (size_t t = i; t < j; ++t)
      if (labels[order[t]] > 0.5f) {
        pos += 1;
        rank_sum += mid_rank;
      }
    i = j;
  }
  const double neg = double(probs.size()) - pos;
  if (pos == 0 || neg == 0) return std::nan("");
  return (rank_sum - pos * (pos + 1) / 2) / (pos * neg);
}

namespace {

// Appends text to a string through a raw pointer: callers reserve a row's
// worst case first, so there are no per-character checks or reallocations.
class LineBuffer {
 public:
  explicit LineBuffer(std::string* out) : out_(out), pos_(out->size()) {}
  ~LineBuffer() { out_->resize(pos_); }
  void Reserve(size_t n) {
    if (pos_ + n > out_->size()) out_->resize(std::max(out_->size() * 2, pos_ + n));
  }
  void Char(char c) { (*out_)[pos_++] = c; }
  void Uint(uint64_t v) { pos_ = std::to_chars(at(), end(), v).ptr - out_->data(); }
  void Real(float v) { pos_ = std::to_chars(at(), end(), v).ptr - out_->data(); }  // shortest round-trip text
  void Text(std::string_view t) {
    std::memcpy(at(), t.data(), t.size());
    pos_ += t.size();
  }

 private:
  char* at() { return out_->data() + pos_; }
  char* end() { return out_->data() + out_->size(); }
  std::string* out_;
  size_t pos_;
};

// Rows are generated in fixed chunks (independent of the thread count, so the
// bytes and the summed figures never depend on it) and written in order.
constexpr uint64_t kChunkRows = 16384;

struct Chunk {
  std::string text;
  std::vector<double> probs;  // classification
  std::vector<float> labels;
  double w_sum = 0, w_rate = 0, w_rate_sq = 0, w_err_sq = 0, w_ce = 0;  // regression
};

void GenerateChunk(const SynthModel& model, uint32_t split, uint64_t begin, uint64_t end, Chunk* chunk) {
  const SynthOptions& opt = model.options();
  const bool regression = opt.task == SynthTask::kRegression, csv = opt.format == SynthFormat::kCsv;
  const size_t max_row_bytes = 96 + size_t{opt.fields} * 48;  // generous bound on one row's text
  ZipfTable impression_table(1.1);
  ZipfSampler impressions(&impression_table, opt.max_impressions);
  *chunk = Chunk();
  chunk->text.resize((end - begin) * (24 + size_t{opt.fields} * 14));
  chunk->text.clear();
  LineBuffer out(&chunk->text);
  SynthRow row;
  for (uint64_t r = begin; r < end; ++r) {
    out.Reserve(max_row_bytes);
    model.SampleRow(split, r, &row);
    const double p = model.TrueProbability(row.ids);
    Rng label_rng(HashCombine(HashCombine(opt.seed, 0x6c6162656cULL + split), r));
    if (regression) {
      const uint32_t n = static_cast<uint32_t>(impressions.Sample(label_rng.Uniform()));
      const float rate = static_cast<float>(Binomial(n, p, label_rng)) / static_cast<float>(n);
      out.Real(rate);
      out.Char(csv ? ',' : ':');
      out.Uint(n);
      chunk->w_sum += n;
      chunk->w_rate += n * double(rate);
      chunk->w_rate_sq += n * double(rate) * rate;
      chunk->w_err_sq += n * (p - rate) * (p - rate);
      const double pc = std::clamp(p, 1e-15, 1 - 1e-15);
      chunk->w_ce -= n * (rate * std::log(pc) + (1 - rate) * std::log(1 - pc));
    } else {
      const float y = label_rng.Uniform() < p ? 1.0f : 0.0f;
      out.Char(y > 0 ? '1' : '0');
      chunk->probs.push_back(p);
      chunk->labels.push_back(y);
    }
    for (uint32_t f = 0; f < opt.fields; ++f) {
      if (csv) {
        out.Char(',');
        out.Uint(row.ids[f]);
        if (opt.raw_numeric && model.is_numeric(f)) {
          out.Char(',');
          out.Uint(row.raw[f]);
        }
      } else {
        out.Char(' ');
        out.Uint(f);
        out.Char(':');
        out.Uint(model.field_offset(f) + row.ids[f]);
        out.Text(":1");
      }
    }
    out.Char('\n');
  }
}

Result<SynthSplitStats> WriteSplit(const SynthModel& model, uint32_t split, uint64_t rows, const std::string& path,
                                   const char* split_name) {
  const SynthOptions& opt = model.options();
  const bool regression = opt.task == SynthTask::kRegression;
  AtomicFile file;
  FIELDFM_RETURN_IF_ERROR(file.Open(path));
  if (opt.format == SynthFormat::kCsv) {
    std::string header = regression ? "label,weight" : "label";
    for (uint32_t f = 0; f < opt.fields; ++f) {
      const std::string name = model.field_name(f);
      header.append(",").append(name);
      if (opt.raw_numeric && model.is_numeric(f)) header.append(",").append(name).append("_raw");
    }
    FIELDFM_RETURN_IF_ERROR(file.Write(header + "\n"));
  }
  std::vector<double> probs;
  std::vector<float> labels;
  if (!regression) {
    probs.reserve(rows);
    labels.reserve(rows);
  }
  Chunk total;
  const size_t threads = std::max<uint32_t>(1, opt.threads);
  std::vector<Chunk> chunks(threads);
  const auto start = std::chrono::steady_clock::now();
  uint64_t next_report = 1u << 20;
  for (uint64_t base = 0; base < rows; base += threads * kChunkRows) {
    std::vector<std::thread> pool;
    size_t used = 0;
    for (; used < threads && base + used * kChunkRows < rows; ++used) {
      const uint64_t b = base + used * kChunkRows, e = std::min(rows, b + kChunkRows);
      if (used == 0) continue;  // this thread does chunk 0 below
      pool.emplace_back(GenerateChunk, std::cref(model), split, b, e, &chunks[used]);
    }
    GenerateChunk(model, split, base, std::min(rows, base + kChunkRows), &chunks[0]);
    for (auto& t : pool) t.join();
    for (size_t c = 0; c < used; ++c) {
      FIELDFM_RETURN_IF_ERROR(file.Write(chunks[c].text));
      probs.insert(probs.end(), chunks[c].probs.begin(), chunks[c].probs.end());
      labels.insert(labels.end(), chunks[c].labels.begin(), chunks[c].labels.end());
      total.w_sum += chunks[c].w_sum;
      total.w_rate += chunks[c].w_rate;
      total.w_rate_sq += chunks[c].w_rate_sq;
      total.w_err_sq += chunks[c].w_err_sq;
      total.w_ce += chunks[c].w_ce;
    }
    const uint64_t done = std::min(rows, base + threads * kChunkRows);
    if (opt.progress && done >= next_report) {
      next_report += 1u << 20;
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::fprintf(stderr, "synth: %s %llu/%llu rows (%.0f rows/s)\n", split_name, static_cast<unsigned long long>(done),
                   static_cast<unsigned long long>(rows), done / secs);
    }
  }
  FIELDFM_RETURN_IF_ERROR(file.Commit());

  SynthSplitStats s;
  s.rows = rows;
  if (regression) {
    s.weight_sum = total.w_sum;
    s.base_rate = total.w_rate / total.w_sum;
    s.bayes_rmse = std::sqrt(total.w_err_sq / total.w_sum);
    s.base_rate_rmse = std::sqrt(std::max(0.0, total.w_rate_sq / total.w_sum - s.base_rate * s.base_rate));
    s.bayes_logloss = total.w_ce / total.w_sum;
    s.base_rate_logloss = BinaryEntropy(s.base_rate);
  } else {
    double pos = 0;
    for (float y : labels) pos += y;
    s.base_rate = pos / double(rows);
    s.bayes_logloss = MeanLogloss(probs, labels);
    s.bayes_auc = RocAuc(probs, labels);
    s.base_rate_logloss = BinaryEntropy(s.base_rate);
  }
  return s;
}

nlohmann::json SplitJson(const SynthSplitStats& s, bool regression, const std::string& file) {
  nlohmann::json j = {{"file", file},
                      {"rows", s.rows},
                      {"base_rate", s.base_rate},
                      {"bayes_logloss", s.bayes_logloss},
                      {"base_rate_logloss", s.base_rate_logloss}};
  if (regression) {
    j["weight_sum"] = s.weight_sum;
    j["bayes_rmse"] = s.bayes_rmse;
    j["base_rate_rmse"] = s.base_rate_rmse;
  } else {
    j["bayes_auc"] = std::isnan(s.bayes_auc) ? nlohmann::json() : nlohmann::json(s.bayes_auc);
  }
  return j;
}

}  // namespace

Result<SynthResult> GenerateSynth(const SynthOptions& options, const std::string& prefix) {
  FIELDFM_ASSIGN_OR_RETURN(SynthModel model, SynthModel::Create(options));
  const bool regression = options.task == SynthTask::kRegression;
  const std::string ext = options.format == SynthFormat::kCsv ? "csv" : "ffm";
  SynthResult result;
  nlohmann::json side;
  side["generator"] = "fieldfm synth";
  side["options"] = {{"fields", options.fields},
                     {"numeric", options.numeric},
                     {"min_cardinality", options.min_cardinality},
                     {"max_cardinality", options.max_cardinality},
                     {"zipf", options.zipf},
                     {"rows", options.rows},
                     {"test_rows", options.test_rows},
                     {"seed", options.seed},
                     {"k", options.k},
                     {"format", options.format == SynthFormat::kCsv ? "csv" : "libffm"},
                     {"task", regression ? "regression" : "classification"},
                     {"raw_numeric", options.raw_numeric},
                     {"max_impressions", options.max_impressions}};
  nlohmann::json fields = nlohmann::json::array();
  for (uint32_t f = 0; f < model.num_fields(); ++f)
    fields.push_back({{"name", model.field_name(f)},
                      {"type", model.is_numeric(f) ? "numeric" : "categorical"},
                      {"cardinality", model.cardinality(f)},
                      {"offset", model.field_offset(f)}});
  side["fields"] = fields;
  side["index_space"] = model.index_space();
  side["model"] = model.Describe();

  struct SplitJob {
    uint32_t id;
    uint64_t rows;
    const char* name;
    SynthSplitStats* stats;
  };
  for (const SplitJob& job : {SplitJob{0, options.rows, "train", &result.train}, SplitJob{1, options.test_rows, "test", &result.test}}) {
    if (job.rows == 0) continue;
    const std::string path = prefix + "." + job.name + "." + ext;
    FIELDFM_ASSIGN_OR_RETURN(*job.stats, WriteSplit(model, job.id, job.rows, path, job.name));
    side[job.name] = SplitJson(*job.stats, regression, std::filesystem::path(path).filename().string());
    result.files.push_back(path);
  }
  const std::string json_path = prefix + ".json";
  FIELDFM_RETURN_IF_ERROR(WriteFileAtomically(json_path, side.dump(2) + "\n"));
  result.files.push_back(json_path);
  result.sidecar = std::move(side);
  return result;
}

}  // namespace fieldfm
