// `fieldfm train`: libffm's flags with libffm's meaning, plus the model
// family's own. Thin: parsing, then fieldfm::Train (include/fieldfm/train.h).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include <toml++/toml.h>

#include "cli/command.h"
#include "cli/open_input.h"
#include "cli/pipeline_flags.h"
#include "fieldfm/data.h"
#include "fieldfm/train.h"

#include <fmt/format.h>

namespace fieldfm::cli {
namespace {

struct TrainFlags {
  std::string train_path, model_path, validation_path;
  std::string model = "ffm", hidden = "100", activation = "relu", optimizer = "adagrad", loss = "logloss",
              unseen = "mean", dense_optimizer = "auto";
  std::string checkpoint, resume, config;
  bool no_checkpoint = false, no_cache = false, quiet = false, no_shuffle = false;
  PipelineFlags pipeline;  // --format, --schema, ... shared with the other data commands
  TrainOptions o;
};

Result<std::vector<int>> ParseHidden(const std::string& s) {
  std::vector<int> sizes;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    char* end = nullptr;
    const long v = std::strtol(item.c_str(), &end, 10);
    if (*end != '\0' || v <= 0 || v > 65536) return Status::InvalidArgument("--hidden: bad layer size '" + item + "'");
    sizes.push_back(int(v));
  }
  return sizes;
}

// One line on stderr, redrawn: rows/s, running loss, ETA.
void DrawProgress(const Progress& p) {
  const double rate = p.seconds > 0 ? double(p.rows_done) / p.seconds : 0;
  const double frac = p.rows_total ? std::min(1.0, double(p.rows_done) / double(p.rows_total)) : 0;
  const int width = 30, filled = int(frac * width);
  const double eta = rate > 0 && p.rows_total > p.rows_done ? double(p.rows_total - p.rows_done) / rate : 0;
  std::fprintf(stderr, "\repoch %d [%.*s%*s] %3.0f%%  %.0f rows/s  loss %.5f  ETA %.0fs ", p.epoch, filled,
               "##############################", width - filled, "", frac * 100, rate, p.running_loss, eta);
  std::fflush(stderr);
}

// --config FILE: TOML whose keys are the long flag names (dashes or
// underscores). Flags given on the command line win.
Status ApplyConfig(CLI::App& app, const std::string& path) {
  toml::table table;
  try {
    table = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    return Status::InvalidArgument(fmt::format("{}:{}: {}", path, where.line, e.description()));
  }
  for (const auto& [key, node] : table) {
    std::string name(key.str());
    std::replace(name.begin(), name.end(), '_', '-');
    CLI::Option* opt = app.get_option_no_throw("--" + name);
    if (!opt || name == "config") return Status::InvalidArgument(fmt::format("{}: unknown key '{}'", path, key.str()));
    if (opt->count() > 0) continue;
    std::string value;
    if (node.is_string()) {
      value = *node.value<std::string>();
    } else if (node.is_boolean()) {
      value = *node.value<bool>() ? "true" : "false";
    } else if (node.is_integer()) {
      value = std::to_string(*node.value<int64_t>());
    } else if (node.is_floating_point()) {
      value = fmt::format("{}", *node.value<double>());
    } else if (const toml::array* a = node.as_array()) {  // hidden = [400, 400]
      for (const auto& item : *a) {
        if (!value.empty()) value += ',';
        value += std::to_string(item.value<int64_t>().value_or(0));
      }
    } else {
      return Status::InvalidArgument(fmt::format("{}: unsupported value for '{}'", path, key.str()));
    }
    try {
      opt->add_result(value);
      opt->run_callback();
    } catch (const CLI::Error& e) {
      return Status::InvalidArgument(fmt::format("{}: {}: {}", path, key.str(), e.what()));
    }
  }
  return Status::Ok();
}

Status Run(TrainFlags& f) {
  TrainOptions& o = f.o;
  FIELDFM_ASSIGN_OR_RETURN(o.model.type, ParseModelType(f.model));
  FIELDFM_ASSIGN_OR_RETURN(o.model.hidden, ParseHidden(f.hidden));
  FIELDFM_ASSIGN_OR_RETURN(o.model.activation, ParseActivation(f.activation));
  FIELDFM_ASSIGN_OR_RETURN(o.optimizer, ParseOptimizer(f.optimizer));
  if (f.dense_optimizer != "auto") {
    FIELDFM_ASSIGN_OR_RETURN(OptimizerType dense, ParseOptimizer(f.dense_optimizer));
    o.dense_optimizer = dense;
  }
  FIELDFM_ASSIGN_OR_RETURN(o.model.loss, ParseLoss(f.loss));
  FIELDFM_ASSIGN_OR_RETURN(o.unseen, ParseUnseenMode(f.unseen));
  if (o.model.k == 0) return Status::InvalidArgument("-k must be positive");
  if (o.model.is_deep() && o.model.hidden.empty()) return Status::InvalidArgument("--hidden: at least one layer");
  if (o.auto_stop && f.validation_path.empty())
    return Status::InvalidArgument("--auto-stop needs a validation set (-p)");
  o.shuffle = !f.no_shuffle;
  if (f.model_path.empty()) f.model_path = f.train_path + ".model";  // libffm's default
  if (!f.no_checkpoint) o.checkpoint_path = f.checkpoint.empty() ? f.model_path + ".ckpt" : f.checkpoint;
  o.resume_path = f.resume;
  o.best_weights_path = f.model_path + ".best";  // --auto-stop's best epoch: beside the model, not in memory

  const ReadOptions read = ToReadOptions(f.pipeline);
  FIELDFM_ASSIGN_OR_RETURN(FeaturePipeline pipeline, BuildPipeline(f.pipeline, f.train_path));
  // Every epoch re-reads the data: parse the text once into the binary cache.
  FIELDFM_ASSIGN_OR_RETURN(std::unique_ptr<ExampleSource> train, OpenInput(pipeline, f.train_path, read, !f.no_cache));
  std::unique_ptr<ExampleSource> valid;
  if (!f.validation_path.empty()) {
    FIELDFM_ASSIGN_OR_RETURN(valid, OpenInput(pipeline, f.validation_path, read, !f.no_cache));
  }

  TrainCallbacks cb;
  const bool bar = !f.quiet && isatty(STDERR_FILENO);
  if (bar) cb.on_progress = DrawProgress;
  cb.on_epoch = [&](const EpochReport& r) {
    if (bar) std::fprintf(stderr, "\r\033[K");
    std::printf("%s\n", r.ToJson().dump().c_str());
    std::fflush(stdout);
  };
  FIELDFM_ASSIGN_OR_RETURN(std::shared_ptr<Model> model, Train(o, *train, valid.get(), pipeline.ToJson(), cb));
  FIELDFM_RETURN_IF_ERROR(SaveModel(*model, f.model_path));
  if (!f.quiet) std::fprintf(stderr, "model written to %s\n", f.model_path.c_str());
  return Status::Ok();
}

Register kTrain{{"train", "Train a model (libffm flags: -k -t -r -l -s -p --auto-stop)", [](CLI::App& app) -> Runner {
                   auto f = std::make_shared<TrainFlags>();
                   TrainOptions& o = f->o;
                   app.add_option("--config", f->config, "TOML file whose keys are the long flag names");
                   app.add_option("TRAIN_FILE", f->train_path, "training data")->required();
                   app.add_option("MODEL_FILE", f->model_path, "output model (default TRAIN_FILE.model)");
                   app.add_option("-k,--k", o.model.k, "latent dimension")->capture_default_str();
                   app.add_option("-t,--epochs", o.epochs, "number of epochs")->capture_default_str();
                   app.add_option("-r,--lr", o.lr,
                                  "learning rate of sparse rows (default: adagrad 0.2, or 0.1 for deep models; "
                                  "sgd/ftrl 0.1; adam 0.001)");
                   app.add_option("-l,--lambda", o.lambda, "L2 on embeddings and linear weights")->capture_default_str();
                   app.add_option("--lambda-dense", o.lambda_dense, "L2 on dense layer weights")->capture_default_str();
                   app.add_option("-s,--train-threads", o.threads, "training threads (--threads: parser threads)")
                       ->capture_default_str();
                   app.add_option("--hot-share", o.hot_share,
                                  "with -s > 1: values in at least this share of rows train in per-thread copies "
                                  "(0: none)")
                       ->capture_default_str()
                       ->check(CLI::Range(0.0, 1.0));
                   app.add_option("-p,--validation", f->validation_path, "validation file");
                   app.add_flag("--auto-stop", o.auto_stop, "stop when validation gets worse; keep the best epoch");
                   app.add_option("--patience", o.patience, "epochs without improvement before --auto-stop stops")
                       ->capture_default_str();
                   app.add_option("--model", f->model, "lr|fm|ffm|deepfm|nfm|deepffm|nffm")->capture_default_str();
                   app.add_option("--hidden", f->hidden, "MLP hidden sizes, e.g. 400,400")->capture_default_str();
                   app.add_option("--activation", f->activation, "relu|tanh|sigmoid|identity")->capture_default_str();
                   app.add_option("--dropout", o.model.dropout, "dropout after each hidden layer")->capture_default_str();
                   app.add_flag("--batch-norm", o.model.batch_norm, "batch normalisation in the MLP");
                   app.add_flag("--mean-pooling", o.model.mean_pooling, "multi-valued fields: mean instead of sum");
                   app.add_flag("--sum-pairs", o.model.nffm_sum_pairs, "nffm: sum the field-pair products");
                   app.add_flag("!--no-norm", o.model.normalize, "no instance normalisation of FM/FFM pair terms");
                   app.add_option("--batch-size", o.batch_size, "rows per step (0: 1 for lr/fm/ffm, 256 deep)")
                       ->capture_default_str();
                   app.add_option("--optimizer", f->optimizer, "sgd|adagrad|adam|ftrl|rowwise-adagrad (sparse rows; rowwise-adagrad: one accumulator per k weights)")
                       ->capture_default_str();
                   app.add_option("--dense-optimizer", f->dense_optimizer,
                                  "auto|sgd|adagrad|adam|ftrl for bias and MLP (auto: adam for deep models, "
                                  "else --optimizer)")
                       ->capture_default_str();
                   app.add_option("--dense-lr", o.dense_lr, "dense learning rate (default: -r if same optimizer, "
                                  "else that optimizer's default)");
                   app.add_option("--lr-decay", o.lr_decay, "learning rate multiplier per epoch")->capture_default_str();
                   app.add_option("--loss", f->loss, "logloss|squared|rate")->capture_default_str();
                   app.add_flag("--weights", o.use_weights, "weight each example's loss by its weight");
                   app.add_option("--seed", o.seed, "random seed")->capture_default_str();
                   app.add_option("--min-count", o.min_count, "values seen fewer times are unseen")->capture_default_str();
                   app.add_option("--unseen", f->unseen, "mean|zero")->capture_default_str();
                   app.add_flag("--no-shuffle", f->no_shuffle, "keep the input order (libffm --no-rand)");
                   app.add_option("--checkpoint", f->checkpoint, "checkpoint file (default MODEL_FILE.ckpt)");
                   app.add_flag("--no-checkpoint", f->no_checkpoint, "write no checkpoint");
                   app.add_flag("--no-cache", f->no_cache, "parse the text every epoch instead of caching it beside the input");
                   app.add_option("--resume", f->resume, "continue from this checkpoint");
                   app.add_flag("-q,--quiet", f->quiet, "no progress bar");
                   AddPipelineFlags(app, &f->pipeline);
                   CLI::App* self = &app;
                   return [f, self]() -> Status {
                     if (!f->config.empty()) FIELDFM_RETURN_IF_ERROR(ApplyConfig(*self, f->config));
                     return Run(*f);
                   };
                 }, 20}};

}  // namespace
}  // namespace fieldfm::cli
