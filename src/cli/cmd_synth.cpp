// `fieldfm synth`: synthetic field-structured CTR data with known Bayes figures.
#include <cstdio>
#include <map>
#include <thread>

#include "cli/command.h"
#include "fieldfm/synth.h"

namespace fieldfm::cli {
namespace {

Runner SetupSynth(CLI::App& sub) {
  auto opt = std::make_shared<SynthOptions>();
  auto prefix = std::make_shared<std::string>();
  sub.add_option("-o,--output", *prefix, "Output prefix: PREFIX.train.<ext>, PREFIX.test.<ext>, PREFIX.json")->required();
  sub.add_option("--rows", opt->rows, "Training rows")->capture_default_str();
  sub.add_option("--test-rows", opt->test_rows, "Test rows (0: no test file)")->capture_default_str();
  sub.add_option("--fields", opt->fields, "Number of fields")->capture_default_str();
  sub.add_option("--numeric", opt->numeric, "How many of the fields are binned numeric counts")->capture_default_str();
  sub.add_option("--max-cardinality", opt->max_cardinality, "Largest categorical cardinality")->capture_default_str();
  sub.add_option("--min-cardinality", opt->min_cardinality, "Smallest categorical cardinality")->capture_default_str();
  sub.add_option("--zipf", opt->zipf, "Zipf exponent of value popularity")->capture_default_str();
  sub.add_option("--seed", opt->seed, "Seed of the hidden model and the rows")->capture_default_str();
  sub.add_option("--k", opt->k, "Latent size of the hidden pairwise term")->capture_default_str();
  sub.add_option("--format", opt->format, "libffm or csv")
      ->transform(CLI::CheckedTransformer(std::map<std::string, SynthFormat>{{"libffm", SynthFormat::kLibffm},
                                                                             {"csv", SynthFormat::kCsv}}));
  sub.add_option("--task", opt->task, "classification (0/1 labels) or regression (rate:impressions)")
      ->transform(CLI::CheckedTransformer(std::map<std::string, SynthTask>{{"classification", SynthTask::kClassification},
                                                                           {"regression", SynthTask::kRegression}}));
  sub.add_flag("--raw-numeric", opt->raw_numeric, "CSV: also write each numeric field's raw count");
  sub.add_option("--max-impressions", opt->max_impressions, "Regression: impressions per row in [1, N]")->capture_default_str();
  opt->threads = std::max(1u, std::thread::hardware_concurrency());
  sub.add_option("--threads", opt->threads, "Generator threads (output is identical for any count)")->capture_default_str();
  return [opt, prefix]() -> Status {
    opt->progress = opt->rows + opt->test_rows >= (2u << 20);
    FIELDFM_ASSIGN_OR_RETURN(SynthResult res, GenerateSynth(*opt, *prefix));
    const bool regression = opt->task == SynthTask::kRegression;
    for (const char* split : {"train", "test"}) {
      const SynthSplitStats& s = split[1] == 'r' ? res.train : res.test;
      if (s.rows == 0) continue;
      if (regression) {
        std::printf("%s: rows %llu  base rate %.4f  Bayes weighted RMSE %.4f  base-rate RMSE %.4f  Bayes logloss %.4f\n",
                    split, static_cast<unsigned long long>(s.rows), s.base_rate, s.bayes_rmse, s.base_rate_rmse,
                    s.bayes_logloss);
      } else {
        std::printf("%s: rows %llu  base rate %.4f  Bayes logloss %.4f  Bayes AUC %.4f  base-rate logloss %.4f\n", split,
                    static_cast<unsigned long long>(s.rows), s.base_rate, s.bayes_logloss, s.bayes_auc,
                    s.base_rate_logloss);
      }
    }
    for (const auto& f : res.files) std::printf("wrote %s\n", f.c_str());
    return Status::Ok();
  };
}

Register kSynth{{"synth", "Generate synthetic CTR data from a hidden field-aware model", SetupSynth, 80}};

}  // namespace
}  // namespace fieldfm::cli
