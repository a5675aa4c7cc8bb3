#!/usr/bin/env bash
# CI step for the Windows installer: build it, then check it under wine.
#
#   bash installer/ci.sh          (from .ci/run, after the test suite)
#
# Exit status: 0 when the installer was built and every wine check passed, or when this machine
# cannot do it at all: not Linux, no apt-get/dpkg (not Debian/Ubuntu), or missing packages and no way
# to install them (not root, no sudo without password); then it prints one line starting with "SKIP:"
# and the reason. 1 when something was tried and failed, including apt-get failing on a Debian machine
# that can install packages: apt waits for the package lock (another install running) up to
# DM_APT_LOCK_TIMEOUT seconds (600 by default) and retries once with fresh lists, then it is a failure.
#
# Time, on a 2-core machine (see installer/README section of the project README for the figures):
# the first run cross-compiles llama.cpp for Windows (Vulkan shaders and the CPU variants are most
# of it); later runs reuse ~/.cache/desktop-mate-tray and take a few minutes. DM_CI_FAST=1 builds
# the smaller configuration (one AVX2 CPU backend, no Vulkan, zlib compression) when CI time is short.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=installer/common.sh
source "$here/common.sh"

skip() { echo "SKIP: installateur Windows non vérifié ici — $*"; exit 0; }

[ "$(uname -s)" = Linux ] || skip "il faut Linux (Debian/Ubuntu)"
command -v apt-get >/dev/null && command -v dpkg >/dev/null || skip "apt-get/dpkg absents (pas Debian/Ubuntu)"

# Everything the build and the check need, installed up front so that a missing package stops here,
# not half-way. (build.sh and check_under_wine.sh would install them too.)
required=(nsis mingw-w64 cmake ninja-build wine wine64 fonts-wine xvfb xdotool x11-apps)
apt_install "${required[@]}" || case $? in
  1) skip "paquets Debian manquants et ce compte ne peut pas les installer (ni root, ni sudo sans mot" \
       "de passe) : ${required[*]}" ;;
  *) die "apt-get n'a pas pu installer les paquets Debian nécessaires (${required[*]}) ; voir ses messages" \
       "ci-dessus. Si une autre installation tenait le verrou des paquets, relancez quand elle est finie." ;;
esac
# Vulkan is optional: without these the installer is built with the CPU backend only (said in the log).
apt_install libvulkan-dev glslc spirv-headers || warn "Vulkan : paquets indisponibles, backend CPU seulement"
# Mesa's software Vulkan driver lets check_under_wine.sh run the Vulkan backend too (optional).
apt_install mesa-vulkan-drivers libvulkan1 || warn "lavapipe (mesa-vulkan-drivers) indisponible : Vulkan non vérifié sous wine"

if [ "${DM_CI_FAST:-0}" = 1 ]; then
  export DM_CPU_VARIANTS=single DM_VULKAN=0 DM_NSIS_COMPRESSOR=zlib
fi

t0=$SECONDS
say "Installateur Windows : construction"
setup="$(bash "$here/build.sh" | tail -1)"
t_build=$((SECONDS - t0))

t1=$SECONDS
say "Installateur Windows : vérification sous wine"
rc=0
bash "$here/check_under_wine.sh" "$setup" || rc=$?
t_check=$((SECONDS - t1))

printf 'installateur : %s (%s Mo)\nconstruction : %d s ; vérification sous wine : %d s ; total : %d s\n' \
  "$(basename "$setup")" "$(du -m "$setup" | cut -f1)" "$t_build" "$t_check" $((SECONDS - t0))
case "$rc" in
  0) ;;
  77) die "la vérification sous wine n'a pas pu démarrer (wine, Xvfb ou mingw-w64 manquant) alors que" \
        "leurs paquets sont installés" ;;
  *) exit 1 ;;
esac
