// `fieldfm serve`: the HTTP prediction server (see docs/serve.md).

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "cli/command.h"
#include "fieldfm/serve.h"

namespace fieldfm::cli {
namespace {

struct ServeFlags {
  ServeOptions options;
  std::string cache_ttl = "60s";
  std::string poll_interval = "2s";
};

// Signals are taken by one thread with sigwait, so handlers never run inside
// the server's threads: SIGHUP reloads, SIGTERM/SIGINT drain and stop.
// SIGUSR1 only wakes the thread when the server ends for another reason.
Status RunServer(ServeFlags& flags) {
  FIELDFM_ASSIGN_OR_RETURN(flags.options.cache_ttl, ParseDuration(flags.cache_ttl));
  FIELDFM_ASSIGN_OR_RETURN(flags.options.poll_interval, ParseDuration(flags.poll_interval));
  flags.options.loader = DefaultModelLoader();
  flags.options.encoder = DefaultInstanceEncoder();

  sigset_t signals;
  sigemptyset(&signals);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) sigaddset(&signals, sig);
  // Before any thread starts, so every server thread inherits the mask.
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  FIELDFM_ASSIGN_OR_RETURN(std::unique_ptr<Server> server, Server::Create(flags.options));
  FIELDFM_RETURN_IF_ERROR(server->Start());
  std::atomic<bool> quit{false};
  std::thread signal_thread([&] {
    while (true) {
      int sig = 0;
      if (sigwait(&signals, &sig) != 0) continue;
      if (sig == SIGHUP) {
        server->RequestReload();
      } else if (sig == SIGTERM || sig == SIGINT) {
        server->Stop();
        return;
      } else if (quit.load()) {
        return;
      }
    }
  });
  Status first = server->WaitForFirstModel();
  if (!first.ok()) {
    server->Stop();
  }
  server->Wait();
  quit = true;
  pthread_kill(signal_thread.native_handle(), SIGUSR1);
  signal_thread.join();
  return first;
}

Register kServe{{"serve", "Serve predictions over HTTP/JSON (cache, micro-batching, hot reload)",
                 [](CLI::App& app) -> Runner {
                   auto flags = std::make_shared<ServeFlags>();
                   ServeOptions& o = flags->options;
                   app.add_option("--model", o.model_path, "Model file written by `fieldfm train`")->required();
                   app.add_option("--host", o.host, "Address to bind; loopback unless set explicitly")
                       ->capture_default_str();
                   app.add_option("--port", o.port, "TCP port (0 = any free port)")->capture_default_str();
                   app.add_option("--io-threads", o.io_threads,
                                  "Event-loop threads serving the connections (0 = one per core)")
                       ->capture_default_str();
                   app.add_option("--threads", o.threads,
                                  "Threads for reloads and requests of --max-batch instances or more")
                       ->capture_default_str();
                   app.add_option("--predict-slots", o.predict_slots,
                                  "Predict threads; cache misses queue into batches behind their calls (0 = one per core)")
                       ->capture_default_str();
                   app.add_option("--cache-entries", o.cache_entries, "Prediction cache bound (0 disables it)")
                       ->capture_default_str();
                   app.add_option("--cache-ttl", flags->cache_ttl, "Cache entry lifetime (e.g. 30s, 5m; 0 = none)")
                       ->capture_default_str();
                   app.add_option("--max-batch", o.max_batch, "Most rows in one batched model call")
                       ->capture_default_str();
                   app.add_option("--max-body", o.max_body_bytes, "Largest request body in bytes (413 above)")
                       ->capture_default_str();
                   app.add_option("--max-instances", o.max_instances, "Most instances per request (413 above)")
                       ->capture_default_str();
                   app.add_option("--poll-interval", flags->poll_interval,
                                  "How often the model file is checked for changes (0 = never)")
                       ->capture_default_str();
                   return [flags] { return RunServer(*flags); };
                 },
                 40}};

}  // namespace
}  // namespace fieldfm::cli

