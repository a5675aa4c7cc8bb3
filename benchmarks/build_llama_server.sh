#!/usr/bin/env bash
# Builds llama.cpp's own `llama-server` from the llama.cpp that llama-cpp-python vendors (same version as
# pyproject.toml's pin), with the flags of our Linux wheel (scripts/dev.sh): Release, GGML_NATIVE=OFF,
# shared libraries, OpenMP as ggml's default, no curl. Prints the path of the binary.
# Not built in CI: benchmarks/runner_vs_llama_server.py uses it to compare our runner with llama-server.
#
#   bash benchmarks/build_llama_server.sh            # -> ~/.cache/desktop-mate-tray/llama-server-<ver>/bin/llama-server
#   JOBS=1 bash benchmarks/build_llama_server.sh     # fewer compile jobs (shared machines)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=../installer/common.sh
source "$here/installer/common.sh"
version="$(llama_cpp_python_version "$here")"
sdist="$(llama_sdist "$version")"
src="$sdist/vendor/llama.cpp"
out="$DM_CACHE_DIR/llama-server-$version"
bin="$out/build/bin/llama-server"
if [ ! -x "$bin" ]; then
  say "Compilation de llama-server (llama.cpp de llama-cpp-python $version), $out"
  cmake -S "$src" -B "$out/build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
    -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF >&2
  nice -n 10 cmake --build "$out/build" --target llama-server -j "${JOBS:-2}" >&2
fi
echo "$bin"
