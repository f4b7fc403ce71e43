// Subcommands register themselves here (one file per subcommand, cmd_*.cpp),
// so adding a command never touches main.cpp.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

#include "fieldfm/status.h"

namespace fieldfm::cli {

// Exit codes shared by every subcommand.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // bad data, I/O
inline constexpr int kExitUsage = 2;    // bad flags or arguments

// Setup adds the subcommand's options to `sub` and returns the function that
// runs it after parsing. The runner returns a Status; main maps it to an exit code.
using Runner = std::function<Status()>;
using Setup = std::function<Runner(CLI::App& sub)>;

struct CommandInfo {
  std::string name;
  std::string description;
  Setup setup;
  int order = 100;  // position in --help
};

std::vector<CommandInfo>& Registry();

struct Register {
  explicit Register(CommandInfo info) { Registry().push_back(std::move(info)); }
};

// Maps a Status to the CLI's exit code (usage errors -> 2, everything else -> 1).
int ExitCodeFor(const Status& st);

}  // namespace fieldfm::cli
