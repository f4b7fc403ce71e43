// `fieldfm predict MODEL INPUT -o OUT`: one prediction per line, input order.
#include <fmt/format.h>

#include "cli/command.h"
#include "train/predict_file.h"
#include "util/atomic_file.h"

namespace fieldfm::cli {
namespace {

struct PredictFlags {
  std::string model, input, output;
  int threads = 1;
  bool skip_bad_lines = false;
};

// Streams: each block's predictions are formatted and appended as they come,
// so memory does not grow with the input. The output appears atomically at the end.
Status Run(const PredictFlags& f) {
  AtomicFile out;
  FIELDFM_RETURN_IF_ERROR(out.Open(f.output));
  std::string buf;
  FIELDFM_RETURN_IF_ERROR(PredictFileTo(f.model, f.input, f.threads, f.skip_bad_lines,
                                        [&](std::span<const float> pred, std::span<const float>,
                                            std::span<const float>) {
                                          buf.clear();
                                          for (float v : pred) fmt::format_to(std::back_inserter(buf), "{:.7g}\n", v);
                                          return out.Write(buf);
                                        }));
  return out.Commit();
}

Register kPredict{{"predict", "Predict with a model: one prediction per input line", [](CLI::App& app) -> Runner {
                     auto f = std::make_shared<PredictFlags>();
                     app.add_option("MODEL", f->model, "model file")->required();
                     app.add_option("INPUT", f->input, "input data (any format the model's pipeline reads)")
                         ->required();
                     app.add_option("-o,--output", f->output, "output file")->required();
                     app.add_option("-s,--threads", f->threads, "threads")->capture_default_str();
                     app.add_flag("--skip-bad-lines", f->skip_bad_lines, "skip malformed lines");
                     return [f] { return Run(*f); };
                   }, 30}};

}  // namespace
}  // namespace fieldfm::cli
