// fieldfm: train, evaluate and serve the factorization-machine family.
#include <algorithm>
#include <cstdio>
#include <map>

#include "cli/command.h"

namespace fieldfm::cli {

std::vector<CommandInfo>& Registry() {
  static std::vector<CommandInfo> commands;
  return commands;
}

int ExitCodeFor(const Status& st) {
  if (st.ok()) return kExitOk;
  return st.code() == StatusCode::kInvalidArgument ? kExitUsage : kExitFailure;
}

}  // namespace fieldfm::cli

int main(int argc, char** argv) {
  using namespace fieldfm::cli;
  CLI::App app{"fieldfm: factorization machines (LR, FM, FFM, DeepFM, NFM, DeepFFM, NFFM) for CTR prediction"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "fieldfm 0.1.0");

  auto commands = Registry();
  std::sort(commands.begin(), commands.end(),
            [](const CommandInfo& a, const CommandInfo& b) { return a.order < b.order || (a.order == b.order && a.name < b.name); });
  std::map<CLI::App*, Runner> runners;
  for (const auto& c : commands) {
    CLI::App* sub = app.add_subcommand(c.name, c.description);
    runners[sub] = c.setup(*sub);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);  // prints help or the error
    return rc == 0 ? kExitOk : kExitUsage;
  }
  for (auto& [sub, run] : runners) {
    if (sub->parsed()) {
      fieldfm::Status st;
      try {
        st = run();
      } catch (const std::exception& e) {
        st = fieldfm::Status::Internal(std::string("internal error: ") + e.what());
      }
      if (!st.ok()) {
        std::fprintf(stderr, "fieldfm %s: error: %s\n", sub->get_name().c_str(), st.message().c_str());
      }
      return ExitCodeFor(st);
    }
  }
  return kExitUsage;
}
