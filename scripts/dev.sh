#!/usr/bin/env bash
# Installs what Desktop-Mate needs into .venv, then runs it or its tests.
#   bash scripts/dev.sh run [ARGS]   start the program (the tray; ARGS go to desktop-mate-tray)
#   bash scripts/dev.sh test [ARGS]  static checks (layers, ruff, mypy), then the test suite (ARGS go to pytest)
#   bash scripts/dev.sh check        only the static checks
#   bash scripts/dev.sh install      only install
# llama-cpp-python compiles llama.cpp (~5 min on 2 cores): the first build is kept as a portable wheel
# (-DGGML_NATIVE=OFF, runs on any x86-64) in the wheel cache and reused by every later install.
# `install` and `test` also build, once, the same llama.cpp with its Vulkan backend for the tests marked
# `vulkan` (scripts/build_llama_vulkan.sh: Debian's cmake, glslc, libvulkan-dev and Mesa's software Vulkan
# device; cached beside the wheel; the CPU package of .venv stays as it is). DESKTOP_MATE_VULKAN=0 skips
# that build: deselect those tests then (-m "not vulkan").
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_VERSION=0.3.36
VENV=.venv
WHEEL_CACHE="${DESKTOP_MATE_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/desktop-mate-tray/wheels}"
QT_LIBS="libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3 libglib2.0-0 \
libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxcb-image0 libxcb-render-util0 libxcb-shape0 libxcb-xkb1 \
libxcb-randr0"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

system_libraries() {
  [ "$(uname -s)" = Linux ] && command -v dpkg >/dev/null || return 0
  local missing=()
  for lib in $QT_LIBS; do dpkg -s "$lib" >/dev/null 2>&1 || missing+=("$lib"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  say "Bibliothèques système pour Qt : ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

llama_wheel() {
  mkdir -p "$WHEEL_CACHE"
  if ! ls "$WHEEL_CACHE"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
    say "Compilation de llama-cpp-python $LLAMA_VERSION (une seule fois, ~5 min), gardée dans $WHEEL_CACHE"
    CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc 2>/dev/null || echo 2)" \
      "$VENV/bin/pip" wheel -q --no-deps --no-cache-dir -w "$WHEEL_CACHE" "llama-cpp-python==$LLAMA_VERSION"
  fi
}

# The Vulkan build of llama.cpp for tests/vulkan (see the header). A machine that cannot build it at all
# (not Linux, no right to install Debian packages) leaves the reason beside the cache: those tests skip.
llama_vulkan() {
  [ "${DESKTOP_MATE_VULKAN:-1}" = 0 ] && return 0
  local rc=0 out
  out="$(DESKTOP_MATE_WHEEL_CACHE="$WHEEL_CACHE" bash scripts/build_llama_vulkan.sh)" || rc=$?
  rm -f "$WHEEL_CACHE/llama-vulkan-$LLAMA_VERSION.unavailable"
  case $rc in
    0) ;;
    77) printf '%s\n' "$out" > "$WHEEL_CACHE/llama-vulkan-$LLAMA_VERSION.unavailable"; say "$out" ;;
    *) echo "$out" >&2; exit 1 ;;
  esac
}

install() {
  system_libraries
  [ -x "$VENV/bin/python" ] || { say "Environnement Python dans $VENV"; python3 -m venv "$VENV"; }
  local stamp="$VENV/.installed" want
  want="$(cat pyproject.toml scripts/dev.sh | sha1sum | cut -c1-40)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    llama_wheel
    say "Installation des dépendances"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q --find-links "$WHEEL_CACHE" --only-binary llama-cpp-python -e ".[test]"
    echo "$want" > "$stamp"
  fi
}

# The layers (import-linter contracts in pyproject.toml), ruff and mypy: each configured in pyproject.toml.
checks() {
  say "Vérifications : couches (import-linter), style (ruff), types (mypy)"
  "$VENV/bin/lint-imports" --no-cache >/dev/null || "$VENV/bin/lint-imports" --no-cache
  "$VENV/bin/ruff" check --quiet .
  "$VENV/bin/mypy"
}

cmd="${1:-run}"
[ $# -gt 0 ] && shift
case "$cmd" in
  install) install; llama_vulkan ;;
  run) install; exec "$VENV/bin/desktop-mate-tray" "$@" ;;
  check) install; checks ;;
  test) install; llama_vulkan; checks; exec "$VENV/bin/python" -m pytest "$@" ;;
  *) echo "usage: bash scripts/dev.sh run|test|check|install [ARGS]" >&2; exit 2 ;;
esac
