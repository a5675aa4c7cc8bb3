#!/usr/bin/env bash
# Cross-compiles the llama.cpp libraries of llama-cpp-python for 64-bit Windows, on Debian/Ubuntu,
# with mingw-w64. The result is cached: a later call with the same version and options only prints
# the folder.
#
#   bash installer/build_llama_win64.sh            # prints the folder that holds lib/*.dll
#   DM_VULKAN=0 bash installer/build_llama_win64.sh # CPU only (no Vulkan backend)
#
# Why cross-compile the sdist ourselves: PyPI has no Windows wheel of llama-cpp-python 0.3.36, and
# its sdist vendors the exact llama.cpp the Python bindings were written against
# (vendor/llama.cpp), so building that is the only way to get DLLs that match llama_cpp/*.py.
#
# How the libraries are built (see also mingw-w64-x86_64.cmake):
# * GGML_BACKEND_DL=ON: the backends (ggml-cpu-*.dll, ggml-vulkan.dll) are plugins that ggml loads
#   at run time, the way llama.cpp's own Windows releases ship. A machine without a Vulkan driver
#   (no vulkan-1.dll) simply skips ggml-vulkan.dll instead of failing to load llama.dll.
#   llama.cpp looks for plugins beside the *executable* (python.exe), so stage_windows_app.py adds
#   one call to llama_cpp/llama_cpp.py that loads them from llama_cpp/lib instead.
# * GGML_CPU_ALL_VARIANTS=ON (DM_CPU_VARIANTS=all, the default): one CPU plugin per instruction set
#   (SSE4.2 ... AVX2 ... AVX-512); ggml picks the best one for the user's processor at run time.
#   DM_CPU_VARIANTS=single builds one AVX2 plugin only (faster build, needs a CPU from 2013 or later).
# * GGML_NATIVE=OFF: never optimise for the build machine. GGML_OPENMP=OFF: ggml's own thread pool
#   instead of libgomp, which every plugin would otherwise link (a copy of the OpenMP runtime per DLL,
#   or libgomp-1.dll to ship and to collide with other programs' copies).
# * Only the libraries llama_cpp loads are built (llama, ggml, ggml-base, the backends); not the
#   llama.cpp tools, not the multimodal "mtmd" library (the tray does not use images).
# * Debian 12's tools are older than llama.cpp's: llama_source_fixes.py makes two small, checked
#   edits (no AMX CPU variant; no VK_EXT_layer_settings with Vulkan headers 1.3.239), and its glslc
#   (shaderc 2023.2) lacks GL_KHR_cooperative_matrix, GL_EXT_integer_dot_product and GL_EXT_bfloat16,
#   so those faster Vulkan shader paths are left out (CMake detects it; plain shaders run everywhere).
#
# Environment:
#   DM_CACHE        cache root (default ~/.cache/desktop-mate-tray)
#   DM_VULKAN       1 (default) build the Vulkan backend when the Debian packages allow it, 0 skip it
#   DM_CPU_VARIANTS all (default) or single
#   DM_JOBS         parallel compile jobs (default: number of CPUs)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
# shellcheck source=installer/common.sh
source "$here/common.sh"

llama_version="$(llama_cpp_python_version "$repo")"
cpu_variants="${DM_CPU_VARIANTS:-all}"
want_vulkan="${DM_VULKAN:-1}"
jobs="${DM_JOBS:-$(nproc 2>/dev/null || echo 2)}"

need_tools() {
  local missing=()
  command -v x86_64-w64-mingw32-g++-posix >/dev/null || missing+=(mingw-w64)
  command -v cmake >/dev/null || missing+=(cmake)
  command -v ninja >/dev/null || missing+=(ninja-build)
  if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}" || die "il manque ${missing[*]} (paquets Debian) pour compiler llama.cpp"
  fi
}

# Vulkan for a Windows target, from Debian packages only:
#   * headers: libvulkan-dev ships vulkan/*.h and vulkan.hpp (the same headers on every OS);
#   * glslc (Debian "glslc") compiles the shaders to SPIR-V, which is the same on every OS;
#   * SPIRV-Headers (Debian "spirv-headers");
#   * the import library for vulkan-1.dll does not exist in Debian's mingw-w64: we make one with
#     dlltool from the list of functions the Windows Vulkan loader exports (the core API 1.0-1.3,
#     plus the surface/swapchain functions), read from vulkan_core.h.
# The headers are copied into a private prefix: pointing the mingw compiler at /usr/include would mix
# Linux's C library headers into a Windows build.
# Sets VK_PREFIX; returns 1 when Vulkan is not wanted or not possible.
vulkan_prefix() {
  local prefix
  if [ "$want_vulkan" != 1 ]; then
    return 1
  fi
  if ! { [ -f /usr/include/vulkan/vulkan.hpp ] && command -v glslc >/dev/null \
         && [ -f /usr/share/cmake/SPIRV-Headers/SPIRV-HeadersConfig.cmake ]; }; then
    apt_install libvulkan-dev glslc spirv-headers || {
      warn "Vulkan : paquets libvulkan-dev/glslc/spirv-headers indisponibles, compilation sans Vulkan"
      return 1
    }
  fi
  # Named after the headers' version: a Debian update of libvulkan-dev makes a new prefix.
  prefix="$DM_CACHE_DIR/win64-llama/vulkan-prefix-$(sed -n 's/^#define VK_HEADER_VERSION \([0-9]*\)$/\1/p' \
    /usr/include/vulkan/vulkan_core.h)"
  VK_PREFIX="$prefix"
  [ -f "$prefix/.complete" ] && return 0
  local tmp="$prefix.tmp.$$"
  rm -rf "$tmp" && mkdir -p "$tmp/include" "$tmp/lib" "$tmp/share/cmake"
  cp -r /usr/include/vulkan "$tmp/include/"
  if [ -d /usr/include/vk_video ]; then cp -r /usr/include/vk_video "$tmp/include/"; fi
  cp -r /usr/include/spirv "$tmp/include/"
  cp -r /usr/share/cmake/SPIRV-Headers "$tmp/share/cmake/"
  python3 "$here/vulkan_def.py" /usr/include/vulkan/vulkan_core.h > "$tmp/lib/vulkan-1.def"
  x86_64-w64-mingw32-dlltool -d "$tmp/lib/vulkan-1.def" -D vulkan-1.dll -l "$tmp/lib/libvulkan-1.a"
  touch "$tmp/.complete"
  rm -rf "$prefix" && mv "$tmp" "$prefix"
}

main() {
  local sdist_dir key out build src vk_args=() vk_prefix
  need_tools
  sdist_dir="$(llama_sdist "$llama_version")"   # unpacked llama_cpp_python-<version>/
  src="$sdist_dir"
  # Two small fixes for Debian 12's older compiler and Vulkan headers (explained in that file).
  python3 "$here/llama_source_fixes.py" "$src"

  local backends="cpu"
  if vulkan_prefix; then
    vk_prefix="$VK_PREFIX"
    backends="cpu+vulkan"
  fi
  # "single" is AVX2 (the key says so: the first "single" builds had ggml's cross-compiling default,
  # plain x86-64 without AVX, ten times slower).
  key="$llama_version-$backends-cpu_$cpu_variants"
  [ "$cpu_variants" = all ] || key="$key-avx2"
  out="$DM_CACHE_DIR/win64-llama/$key"
  if [ -f "$out/BUILD-INFO.txt" ]; then
    echo "$out"
    return 0
  fi

  build="$DM_CACHE_DIR/win64-llama/build-$key"
  mkdir -p "$build"
  local cpu_args=(-DGGML_CPU_ALL_VARIANTS=ON)
  # Cross-compiling, ggml turns every instruction set off unless asked (GGML_NATIVE=OFF): the single
  # plugin asks for the AVX2 generation (Haswell, 2013, and later), like the "haswell" variant.
  [ "$cpu_variants" = all ] || cpu_args=(-DGGML_CPU_ALL_VARIANTS=OFF -DGGML_SSE42=ON -DGGML_AVX=ON
    -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON)
  local targets=(llama ggml)
  if [ "$backends" = cpu+vulkan ]; then
    vk_args=(-DGGML_VULKAN=ON
      -DCMAKE_FIND_ROOT_PATH="/usr/x86_64-w64-mingw32;$vk_prefix"
      -DVulkan_INCLUDE_DIR="$vk_prefix/include"
      -DVulkan_LIBRARY="$vk_prefix/lib/libvulkan-1.a"
      -DVulkan_GLSLC_EXECUTABLE="$(command -v glslc)"
      -DSPIRV-Headers_DIR="$vk_prefix/share/cmake/SPIRV-Headers")
    targets+=(ggml-vulkan)
  fi

  say "Compilation croisée de llama.cpp ($llama_version, $backends, CPU: $cpu_variants) — lent la première fois"
  local t0=$SECONDS
  cmake -S "$src" -B "$build" -G Ninja \
    -DCMAKE_TOOLCHAIN_FILE="$here/mingw-w64-x86_64.cmake" \
    -DCMAKE_BUILD_TYPE=Release \
    -DLLAVA_BUILD=OFF \
    -DGGML_BACKEND_DL=ON "${cpu_args[@]}" \
    -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DGGML_CCACHE=OFF \
    -DCMAKE_C_FLAGS="$(mingw_compat_flags)" \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF \
    "${vk_args[@]}" > "$build/configure.log" 2>&1 \
    || { tail -40 "$build/configure.log" >&2; die "configuration CMake échouée ($build/configure.log)"; }

  # The CPU plugins are MODULE targets nobody links to: name them explicitly.
  local t
  while read -r t; do targets+=("$t"); done < <(
    ninja -C "$build" -t targets all 2>/dev/null | sed -n 's/^\(ggml-cpu[a-z0-9_-]*\): phony$/\1/p' | sort -u)
  ninja -C "$build" -j "$jobs" "${targets[@]}" > "$build/build.log" 2>&1 \
    || { tail -60 "$build/build.log" >&2; die "compilation échouée ($build/build.log)"; }

  rm -rf "$out.tmp" && mkdir -p "$out.tmp/lib"
  cp "$build"/bin/*.dll "$out.tmp/lib/"
  # mingw names it libllama.dll; llama_cpp accepts both, but llama.dll is the name of the official
  # Windows builds (and of the CUDA build of the GitHub workflow). Nothing links against it.
  [ -f "$out.tmp/lib/libllama.dll" ] && mv "$out.tmp/lib/libllama.dll" "$out.tmp/lib/llama.dll"
  x86_64-w64-mingw32-strip --strip-unneeded "$out.tmp"/lib/*.dll
  check_imports "$out.tmp/lib"
  {
    echo "llama-cpp-python $llama_version (vendor/llama.cpp of its sdist)"
    echo "backends: $backends; CPU variants: $cpu_variants; GGML_BACKEND_DL=ON GGML_NATIVE=OFF GGML_OPENMP=OFF"
    echo "compiler: $(x86_64-w64-mingw32-g++-posix --version | head -1)"
    echo "compile seconds: $((SECONDS - t0)) on $jobs jobs"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    (cd "$out.tmp/lib" && ls -l *.dll)
  } > "$out.tmp/BUILD-INFO.txt"
  rm -rf "$out" && mv "$out.tmp" "$out"
  # The objects (~300 MB) are not needed once the DLLs are cached; a failed build keeps its folder,
  # so that the next run resumes where it stopped.
  rm -rf "$build"
  say "llama.cpp pour Windows compilé en $((SECONDS - t0)) s : $out"
  echo "$out"
}

# Older mingw-w64 headers (Debian 12: version 10) lack THREAD_POWER_THROTTLING_STATE, which
# ggml-cpu.c needs; print the compiler flag that supplies it, or nothing when the headers have it.
mingw_compat_flags() {
  local probe
  probe="$(mktemp -d)"
  printf '%s\n' '#define WIN32_LEAN_AND_MEAN' '#include <windows.h>' \
    'int f(void) { THREAD_POWER_THROTTLING_STATE t = {THREAD_POWER_THROTTLING_CURRENT_VERSION, 0, 0};' \
    '  return SetThreadInformation(GetCurrentThread(), ThreadPowerThrottling, &t, sizeof t); }' \
    > "$probe/probe.c"
  if ! x86_64-w64-mingw32-gcc-posix -c "$probe/probe.c" -o "$probe/probe.o" 2>/dev/null; then
    echo "-include $here/mingw-compat/thread_power_throttling.h"
  fi
  rm -rf "$probe"
}

# A DLL that needs libstdc++-6.dll or libwinpthread-1.dll would load on the build machine's wine
# (which has none either) only by luck; fail the build instead of shipping it.
check_imports() {
  local dll bad=0
  for dll in "$1"/*.dll; do
    if x86_64-w64-mingw32-objdump -p "$dll" | grep -E "DLL Name: (libstdc|libgcc|libwinpthread|libgomp)" >&2; then
      warn "$(basename "$dll") dépend d'une DLL de mingw"
      bad=1
    fi
  done
  [ $bad -eq 0 ] || die "DLL non autonome"
}

main "$@"
