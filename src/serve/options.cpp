// Small option helpers shared by the server and the CLI.
#include <arpa/inet.h>

#include <charconv>
#include <string>

#include "fieldfm/serve.h"

namespace fieldfm {

Result<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  const std::string original(text);
  double number = 0;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(begin, end, number);
  if (ec != std::errc() || ptr == begin || number < 0) {
    return Status::InvalidArgument("bad duration (token '" + original + "'): expected e.g. 500ms, 2s, 1m");
  }
  const std::string_view unit(ptr, end - ptr);
  double ms;
  if (unit == "ms") ms = number;
  else if (unit.empty() || unit == "s") ms = number * 1e3;
  else if (unit == "m") ms = number * 60e3;
  else if (unit == "h") ms = number * 3600e3;
  else return Status::InvalidArgument("bad duration unit (token '" + original + "'): use ms, s, m or h");
  return std::chrono::milliseconds(static_cast<int64_t>(ms + 0.5));
}

bool IsLoopbackHost(std::string_view host) {
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  in_addr addr{};
  const std::string h(host);
  if (inet_pton(AF_INET, h.c_str(), &addr) == 1) {
    return (ntohl(addr.s_addr) >> 24) == 127;
  }
  return false;
}

}  // namespace fieldfm
