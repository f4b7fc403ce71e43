// `fieldfm eval MODEL INPUT [--json]`: AUC, logloss, RMSE, weighted RMSE, NE, calibration.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "train/metrics.h"
#include "train/predict_file.h"

namespace fieldfm::cli {
namespace {

struct EvalFlags {
  std::string model, input;
  int threads = 1;
  bool json = false, skip_bad_lines = false;
};

Status Run(const EvalFlags& f) {
  FIELDFM_ASSIGN_OR_RETURN(FilePredictions p, PredictFile(f.model, f.input, f.threads, f.skip_bad_lines));
  if (p.pred.empty()) return Status::DataError(f.input + ": no examples");
  const Task task = SpecOf(*p.model).loss == LossType::kLogloss ? Task::kClassification : Task::kRegression;
  const Metrics m = ComputeMetrics(p.pred, p.labels, p.weights, task);
  const nlohmann::json j{{"rows", m.rows},         {"weight_sum", m.weight_sum},   {"auc", m.auc},
                         {"logloss", m.logloss},   {"rmse", m.rmse},               {"weighted_rmse", m.weighted_rmse},
                         {"ne", m.ne},             {"calibration", m.calibration}};
  if (f.json) {
    std::printf("%s\n", j.dump().c_str());
  } else {
    for (const auto& [key, value] : j.items()) std::printf("%-14s %s\n", key.c_str(), value.dump().c_str());
  }
  return Status::Ok();
}

Register kEval{{"eval", "Evaluate a model on labelled data", [](CLI::App& app) -> Runner {
                  auto f = std::make_shared<EvalFlags>();
                  app.add_option("MODEL", f->model, "model file")->required();
                  app.add_option("INPUT", f->input, "labelled data")->required();
                  app.add_flag("--json", f->json, "one JSON object");
                  app.add_option("-s,--threads", f->threads, "threads")->capture_default_str();
                  app.add_flag("--skip-bad-lines", f->skip_bad_lines, "skip malformed lines");
                  return [f] { return Run(*f); };
                }, 40}};

}  // namespace
}  // namespace fieldfm::cli
