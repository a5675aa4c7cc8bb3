#!/usr/bin/env bash
# Builds (once, cached) the llama.cpp libraries of the pinned llama-cpp-python with the Vulkan backend,
# for Linux, and prints the folder that holds them (lib/libllama.so, libggml-vulkan.so, libllama-common.so…).
#
#   bash scripts/build_llama_vulkan.sh          # prints the folder; builds it the first time (~15 min)
#
# What it is for: the GPU path of the memory plan tested for real without a GPU. Mesa's software Vulkan
# device (lavapipe, Debian's mesa-vulkan-drivers) runs llama.cpp's Vulkan backend on the CPU, so layers
# really go to a Vulkan device and buffers are really allocated there (tests marked `vulkan`,
# benchmarks/plan_accuracy.py). The Python package stays the CPU one of .venv: llama-cpp-python loads
# its libraries from the folder named by LLAMA_CPP_LIB_PATH, which the tests set only for the runner and
# the probe processes they start. Same version, same sources, so the bindings match these libraries.
#
# How: the sdist of llama-cpp-python (installer/common.sh's llama_sdist, shared with the Windows build),
# with installer/llama_source_fixes.py (Debian 12's Vulkan headers are older than llama.cpp expects),
# configured like the CPU wheel (GGML_NATIVE=OFF: runs on any x86-64) plus GGML_VULKAN=ON; only the
# libraries llama_cpp loads are built (no tools, no multimodal library), and libllama-common (llama.cpp's
# own fit, which the tests compare with). Every library finds its neighbours through RUNPATH $ORIGIN.
# A build cut by a time limit resumes where it stopped (the build folder is kept until it succeeds).
#
# Exit status: 0 built (the folder on stdout); 77 this machine cannot build it at all (not Linux, or
# Debian packages cannot be installed: the reason on stdout, prefixed "SKIP: "); 1 a real failure.
#
# Environment: DESKTOP_MATE_WHEEL_CACHE (the cache, shared with the CPU wheel); DM_JOBS (parallel compile
# jobs, default: the number of CPUs; nice -n 19 always).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
# shellcheck source=installer/common.sh
source "$repo/installer/common.sh"

WHEEL_CACHE="${DESKTOP_MATE_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/desktop-mate-tray/wheels}"
jobs="${DM_JOBS:-$(nproc 2>/dev/null || echo 2)}"
# Build tools, the Vulkan headers and shader compiler, and what runs it here: the loader and lavapipe.
PACKAGES="cmake ninja-build g++ glslc libvulkan-dev spirv-headers libvulkan1 mesa-vulkan-drivers"

skip() { echo "SKIP: $*"; exit 77; }

[ "$(uname -s)" = Linux ] || skip "le moteur Vulkan de test ne se construit que sous Linux"
version="$(llama_cpp_python_version "$repo")"
out="$WHEEL_CACHE/llama-vulkan-$version"
if [ -f "$out/BUILD-INFO.txt" ]; then
  echo "$out"
  exit 0
fi

# shellcheck disable=SC2086
apt_install $PACKAGES || case $? in
  1) skip "impossible d'installer des paquets Debian ici ($PACKAGES)" ;;
  *) die "apt-get n'a pas pu installer $PACKAGES" ;;
esac

src="$(llama_sdist "$version")"
python3 "$repo/installer/llama_source_fixes.py" "$src"
build="$WHEEL_CACHE/llama-vulkan-build-$version"
mkdir -p "$build"
say "Compilation de llama.cpp $version avec Vulkan (une seule fois, ~15 min), gardée dans $out"
t0=$SECONDS
if [ ! -f "$build/build.ninja" ]; then
  nice -n 19 cmake -S "$src" -B "$build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release \
    -DLLAVA_BUILD=OFF \
    -DGGML_NATIVE=OFF -DGGML_VULKAN=ON -DGGML_CCACHE=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON -DCMAKE_INSTALL_RPATH='$ORIGIN' \
    > "$build/configure.log" 2>&1 \
    || { tail -40 "$build/configure.log" >&2; rm -f "$build/build.ninja"; die "configuration CMake échouée ($build/configure.log)"; }
fi
nice -n 19 ninja -C "$build" -j "$jobs" llama ggml ggml-base ggml-cpu ggml-vulkan llama-common \
  > "$build/build.log" 2>&1 \
  || { tail -40 "$build/build.log" >&2; die "compilation échouée ($build/build.log)"; }

rm -rf "$out.tmp" && mkdir -p "$out.tmp/lib"
cp -P "$build"/bin/*.so* "$out.tmp/lib/"
strip --strip-unneeded "$out.tmp"/lib/*.so.*.* 2>/dev/null || true
{
  echo "llama-cpp-python $version (vendor/llama.cpp of its sdist), Linux, CPU + Vulkan"
  echo "GGML_NATIVE=OFF GGML_VULKAN=ON LLAVA_BUILD=OFF; glslc $(glslc --version 2>/dev/null | head -1)"
  echo "compile seconds: $((SECONDS - t0)) on $jobs jobs"
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  (cd "$out.tmp/lib" && ls -l)
} > "$out.tmp/BUILD-INFO.txt"
rm -rf "$out" && mv "$out.tmp" "$out"
rm -rf "$build"  # the objects (~300 MB) are not needed once the libraries are cached
say "llama.cpp avec Vulkan compilé en $((SECONDS - t0)) s : $out"
echo "$out"
