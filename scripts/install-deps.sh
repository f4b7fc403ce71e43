#!/usr/bin/env bash
# Installs every Debian 12 package fieldfm needs to build, test and benchmark.
# Nothing is downloaded at build time: CMake only finds what this script installed.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libcli11-dev            # command line
  libfmt-dev libspdlog-dev
  nlohmann-json3-dev      # JSON sidecars, schemas, model metadata, HTTP bodies
  libtomlplusplus-dev     # TOML schemas and config files
  libxxhash-dev           # stable 64-bit hashing of categorical values
  zlib1g-dev libzstd-dev  # transparent .gz / .zst input
  libeigen3-dev           # small dense algebra (batch norm, reductions)
  libdnnl-dev             # dense layers' matrix products (docs/models.md, "Dense layers")
  ocl-icd-opencl-dev      # only a recommend of libdnnl-dev, but dnnl-config.cmake requires OpenCL
  libgtest-dev libgmock-dev libbenchmark-dev
  libboost-dev            # fieldfm serve: Asio + Beast (header-only)
  libsimdjson-dev         # fieldfm serve: predict bodies
  libcpp-httplib-dev      # HTTP client of the serve tests
  python3                 # bench/speed.py and bench/accuracy.py (the speed_smoke test)
)
# Stamp file: skip apt when the exact list is already installed (fast re-runs).
if ! dpkg -s "${PACKAGES[@]}" >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"
fi
