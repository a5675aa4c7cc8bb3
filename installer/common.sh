# Helpers shared by the installer scripts (sourced, not run).
# Downloads and cross-compiled libraries live in one cache so that a rebuild does not fetch or compile
# anything again; build outputs live in installer/build and installer/dist (ignored by git).

DM_CACHE_DIR="${DM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/desktop-mate-tray}"
DM_DOWNLOADS="$DM_CACHE_DIR/win64-downloads"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
warn() { printf '\033[33mattention : %s\033[0m\n' "$*" >&2; }
die() { printf '\033[31merreur : %s\033[0m\n' "$*" >&2; exit 1; }

# How long apt-get waits for another install (unattended upgrades, a second CI job) to release the
# package lock before giving up, in seconds.
DM_APT_LOCK_TIMEOUT="${DM_APT_LOCK_TIMEOUT:-600}"

# Installs Debian packages when they are missing. Never exits; returns
#   0  the packages are installed;
#   1  this machine cannot install Debian packages at all (no dpkg or apt-get, not root and no sudo
#      without password): the caller may skip;
#   2  apt-get was tried and failed, after waiting for the package lock and retrying once with fresh
#      package lists: a real failure (apt's last lines are on stderr).
apt_install() {
  local missing=() p
  command -v dpkg >/dev/null && command -v apt-get >/dev/null || return 1
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null && sudo -n true 2>/dev/null || return 1
    sudo="sudo -n"
  fi
  say "Paquets Debian : ${missing[*]}"
  local lock=(-o "DPkg::Lock::Timeout=$DM_APT_LOCK_TIMEOUT") out
  out="$(mktemp)"
  if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get "${lock[@]}" install -y -qq --no-install-recommends \
      "${missing[@]}" >"$out" 2>&1; then
    # The package lists may be stale or absent (fresh container): refresh them once and retry.
    if ! { $sudo apt-get "${lock[@]}" update -qq \
        && DEBIAN_FRONTEND=noninteractive $sudo apt-get "${lock[@]}" install -y -qq --no-install-recommends \
          "${missing[@]}"; } >"$out" 2>&1; then
      warn "apt-get n'a pas pu installer ${missing[*]} :"
      tail -n 5 "$out" >&2
      rm -f "$out"
      return 2
    fi
  fi
  rm -f "$out"
}

# The program's version: tray_app.__version__, which must agree with pyproject.toml.
app_version() {
  local repo="$1" v p
  v="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$repo/tray_app/__init__.py")"
  p="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/pyproject.toml" | head -1)"
  [ -n "$v" ] || die "__version__ introuvable dans tray_app/__init__.py"
  [ "$v" = "$p" ] || die "version différente : tray_app.__version__=$v, pyproject.toml=$p"
  echo "$v"
}

# The llama-cpp-python version pinned in pyproject.toml ("llama-cpp-python[server]==X").
llama_cpp_python_version() {
  local v
  v="$(sed -n 's/.*"llama-cpp-python\(\[[a-z,]*\]\)\{0,1\}==\([0-9][0-9.]*\)".*/\2/p' "$1/pyproject.toml")"
  [ -n "$v" ] || die "llama-cpp-python==X introuvable dans pyproject.toml"
  echo "$v"
}

# Downloads (once) and unpacks (once) the llama-cpp-python sdist; prints the unpacked folder.
llama_sdist() {
  local version="$1" dir="$DM_DOWNLOADS/sdist"
  local unpacked="$dir/llama_cpp_python-$version"
  if [ ! -f "$unpacked/PKG-INFO" ]; then
    mkdir -p "$dir"
    if ! ls "$dir"/llama_cpp_python-"$version".tar.gz >/dev/null 2>&1; then
      say "Téléchargement des sources de llama-cpp-python $version (PyPI, ~75 Mo)"
      python3 -m pip download -q --no-deps --no-binary :all: -d "$dir" "llama-cpp-python==$version" >&2 \
        || die "téléchargement de llama-cpp-python $version impossible"
    fi
    rm -rf "$unpacked"
    tar -xzf "$dir/llama_cpp_python-$version.tar.gz" -C "$dir"
  fi
  echo "$unpacked"
}
