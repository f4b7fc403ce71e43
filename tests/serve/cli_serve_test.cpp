// The real `fieldfm serve` binary: start on a trained model, answer, reload on
// SIGHUP, drain and exit 0 on SIGTERM.

#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace fieldfm {
namespace {

using nlohmann::json;

const std::string kData = std::string(FIELDFM_SHARED_DATA) + "/criteo_xlearn_ffm/small_train.txt";

// Runs a command; returns its exit status (-1 if it did not exit normally).
int RunCommand(const std::vector<std::string>& args, const std::string& log_path) {
  pid_t pid = fork();
  if (pid == 0) {
    FILE* log = std::fopen(log_path.c_str(), "a");
    if (log) {
      dup2(fileno(log), 1);
      dup2(fileno(log), 2);
    }
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class CliServeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/fieldfm_cli_serve_XXXXXX";
    dir_ = mkdtemp(tmpl);
    model_ = dir_ + "/model.fieldfm";
    log_ = dir_ + "/log.txt";
    ASSERT_EQ(RunCommand({FIELDFM_BINARY, "train", "--model", "ffm", "-t", "2", "-q", "--no-checkpoint", kData, model_}, log_), 0)
        << ReadAll(log_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  pid_t StartServer(int port) {
    pid_t pid = fork();
    if (pid == 0) {
      FILE* log = std::fopen(log_.c_str(), "a");
      if (log) dup2(fileno(log), 2);
      const std::string p = std::to_string(port);
      execl(FIELDFM_BINARY, FIELDFM_BINARY, "serve", "--model", model_.c_str(), "--port", p.c_str(), "--threads", "8",
            static_cast<char*>(nullptr));
      _exit(127);
    }
    return pid;
  }

  std::string dir_, model_, log_;
};

// Token instances from the training file, labels dropped.
json Instances(size_t n) {
  std::ifstream in(kData);
  json out = json::array();
  std::string line;
  while (out.size() < n && std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    out.push_back(line.substr(line.find(' ') + 1));
  }
  return out;
}

TEST_F(CliServeTest, ServesReloadsOnSighupAndDrainsOnSigterm) {
  const int port = FreePort();
  pid_t pid = StartServer(port);
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(std::chrono::seconds(1));
  bool ready = false;
  for (int i = 0; i < 3000 && !ready; ++i) {  // hang guard: up to 30 s to load
    auto res = c.Get("/readyz");
    ready = res && res->status == 200;
    if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(ready) << ReadAll(log_);

  const json instances = Instances(20);
  auto res = c.Post("/v1/predict", json{{"instances", instances}}.dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const json answer = json::parse(res->body);
  ASSERT_EQ(answer["predictions"].size(), instances.size());
  for (const auto& p : answer["predictions"]) {
    EXPECT_GE(p.get<double>(), 0.0);
    EXPECT_LE(p.get<double>(), 1.0);
  }
  const std::string version = answer["model_version"];

  // The server answers exactly what `fieldfm predict` writes for the same rows.
  {
    const std::string rows = dir_ + "/rows.ffm", pred = dir_ + "/pred.txt";
    std::ofstream out(rows);
    for (const auto& inst : instances) out << "0 " << inst.get<std::string>() << "\n";
    out.close();
    ASSERT_EQ(RunCommand({FIELDFM_BINARY, "predict", model_, rows, "-o", pred}, log_), 0) << ReadAll(log_);
    std::ifstream in(pred);
    size_t i = 0;
    for (std::string line; std::getline(in, line); ++i) {
      ASSERT_LT(i, instances.size());
      EXPECT_NEAR(answer["predictions"][i].get<double>(), std::stod(line), 2e-6) << "instance " << i;
    }
    EXPECT_EQ(i, instances.size());
  }

  ASSERT_EQ(kill(pid, SIGHUP), 0);
  for (int i = 0; i < 3000 && ReadAll(log_).find("loaded in") == ReadAll(log_).rfind("loaded in"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // until a second "loaded in" line
  }
  auto again = c.Post("/v1/predict", json{{"instances", instances}}.dump(), "application/json");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
  EXPECT_EQ(json::parse(again->body)["model_version"], version);  // same file, same version

  ASSERT_EQ(kill(pid, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << ReadAll(log_);
  EXPECT_EQ(WEXITSTATUS(status), 0) << ReadAll(log_);
  EXPECT_NE(ReadAll(log_).find("stopped"), std::string::npos);
}

TEST_F(CliServeTest, CorruptModelExitsWithAnError) {
  const std::string bad = dir_ + "/bad.fieldfm";
  std::ofstream(bad) << "not a model";
  EXPECT_EQ(RunCommand({FIELDFM_BINARY, "serve", "--model", bad, "--port", std::to_string(FreePort())}, log_), 1);
  EXPECT_EQ(RunCommand({FIELDFM_BINARY, "serve", "--model", model_, "--cache-ttl", "soon"}, log_), 2);
}

}  // namespace
}  // namespace fieldfm

