// `fieldfm predict MODEL INPUT -o OUT`: one prediction per line, input order.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/command.h"
#include "train/predict_file.h"
#include "util/atomic_file.h"
#include "util/float_text.h"

namespace fieldfm::cli {
namespace {

// One value as "%.7g\n" (the same text as fmt's "{:.7g}"). FormatG7 is an
// exact integer path for the usual range, about half std::to_chars' time
// (bench/format_bench.cpp; figures in bench/RESULTS.md, session 10).
constexpr size_t kMaxPredictionChars = kMaxG7Chars;

struct PredictFlags {
  std::string model, input, output;
  int threads = 1;
  bool skip_bad_lines = false, quiet = false;
};

char* FormatPrediction(float v, char* p) {
  p = FormatG7(v, p);
  *p++ = '\n';
  return p;
}

// Streams: each block's predictions are formatted and appended as they come,
// so memory does not grow with the input. The output appears atomically at
// the end. A summary line goes to stderr (the predictions may be on stdout).
// Formatting stays on the sink's thread: from a binary cache that is a worker
// whose block's turn came while the others predict theirs (PredictSource),
// and splitting it further would take a core from them.
Status Run(const PredictFlags& f) {
  AtomicFile out;
  FIELDFM_RETURN_IF_ERROR(out.Open(f.output));
  const int threads = std::max(1, f.threads);
  std::string text;
  PredictTimings t;
  FIELDFM_RETURN_IF_ERROR(PredictFileTo(
      f.model, f.input, f.threads, f.skip_bad_lines,
      [&](std::span<const float> pred, std::span<const float>, std::span<const float>) {
        text.resize(pred.size() * (kMaxPredictionChars + 1));
        char* p = text.data();
        for (const float v : pred) p = FormatPrediction(v, p);
        text.resize(size_t(p - text.data()));
        return out.Write(text);
      },
      &t));
  FIELDFM_RETURN_IF_ERROR(out.Commit());
  if (!f.quiet)
    std::fprintf(stderr, "predicted %llu rows in %.3f s (%.0f rows/s, %d thread%s; model loaded in %.3f s)\n",
                 static_cast<unsigned long long>(t.rows), t.predict_seconds,
                 t.predict_seconds > 0 ? double(t.rows) / t.predict_seconds : 0.0, threads, threads == 1 ? "" : "s",
                 t.load_seconds);
  return Status::Ok();
}

Register kPredict{{"predict", "Predict with a model: one prediction per input line", [](CLI::App& app) -> Runner {
                     auto f = std::make_shared<PredictFlags>();
                     app.add_option("MODEL", f->model, "model file")->required();
                     app.add_option("INPUT", f->input, "input data (any format the model's pipeline reads)")
                         ->required();
                     app.add_option("-o,--output", f->output, "output file ('-': standard output)")->required();
                     app.add_option("-s,--threads", f->threads, "threads")->capture_default_str();
                     app.add_flag("--skip-bad-lines", f->skip_bad_lines, "skip malformed lines");
                     app.add_flag("-q,--quiet", f->quiet, "no summary line on stderr");
                     return [f] { return Run(*f); };
                   }, 30}};

}  // namespace
}  // namespace fieldfm::cli
