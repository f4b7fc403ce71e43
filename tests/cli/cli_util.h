// Runs the built `fieldfm` binary in tests and captures its output.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace fieldfm::testing {

struct CliRun {
  int exit_code = -1;
  std::string out;  // stdout + stderr
};

inline CliRun RunCli(const std::string& args) {
  std::string cmd = std::string(FIELDFM_BINARY) + " " + args + " 2>&1";
  CliRun r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// A fresh directory, removed with the object.
class CliTempDir {
 public:
  CliTempDir() {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("fieldfm_cli_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::create_directories(path_);
  }
  ~CliTempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name, const std::string& content) const {
    std::string p = Path(name);
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
  std::string Path(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace fieldfm::testing
