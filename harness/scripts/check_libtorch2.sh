#!/usr/bin/env bash
# Builds moelab and runs its default test suite against LibTorch 2.x on the CPU, without a GPU
# machine: in a Debian 13 (trixie) root made with debootstrap, whose libtorch-dev is 2.6 (with
# g++ 14, fmt 10, yaml-cpp 0.8, SQLiteCpp 3.3, CLI11 2.4). Catch2 stays v2: this machine's
# Debian 12 package is installed there (trixie ships v3). The working tree (tracked and
# untracked files, not ignored ones) and the Gutenberg corpus in .data/ are copied in.
#
#   sudo bash harness/scripts/check_libtorch2.sh [ROOT_DIR]     (default /tmp/moelab-trixie)
#
# Needs root (debootstrap, chroot, mounting /proc) and Debian's archive; where the machine
# cannot provide them it says why and exits 3 (.ci/run then skips the check). A build or test
# failure exits non-zero otherwise. Idempotent: the root, its packages and its build folder
# are reused, so a second check only rebuilds what changed.
# The first check took about 9 minutes on 2 cores (debootstrap 22 s, packages 1 min, build
# 6 min, tests 80 s); later ones rebuild only what changed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET="${1:-/tmp/moelab-trixie}"
PACKAGES=(
  g++ cmake make libtorch-dev libopenblas0-pthread libyaml-cpp-dev libfmt-dev libsqlitecpp-dev
  libsqlite3-dev libcli11-dev nlohmann-json3-dev zlib1g-dev nettle-dev libboost-dev pkg-config
  libpq-dev dataset-fashion-mnist gnuplot-nox python3-scipy
)
DEBIAN_ROOT_NAME=check_libtorch2
# shellcheck source=harness/scripts/debian_root.sh
source "$ROOT/harness/scripts/debian_root.sh"

debian_root_host
debian_root_create "$TARGET" trixie
debian_root_trap "$TARGET"
debian_root_mount "$TARGET" proc
debian_root_install "$TARGET" "$TARGET.apt.log" "${PACKAGES[@]}" ||
  debian_root_unable "installing Debian 13 packages failed (see $TARGET.apt.log)"
if ! chroot "$TARGET" dpkg-query -W -f='${Version}' catch2 2>/dev/null | grep -q '^2\.'; then
  mkdir -p "$TARGET/debs"
  download() { apt-get download catch2 || { apt-get update -qq && apt-get download catch2; }; }
  (cd "$TARGET/debs" && download >/dev/null 2>&1) ||
    debian_root_unable "cannot download Debian 12's catch2 (apt-get download catch2)"
  chroot "$TARGET" sh -c 'dpkg -i /debs/catch2_2*.deb' >/dev/null
fi

# The working tree goes to /src; a file whose content changed is rewritten (and so rebuilt),
# an unchanged one keeps its timestamp, so that /build stays incremental.
echo "check_libtorch2: copying the working tree to $TARGET/src"
rm -rf "$TARGET/src.new"
mkdir -p "$TARGET/src.new" "$TARGET/src"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard |
  tar --null -T - -cf - | tar -xf - -C "$TARGET/src.new")
(cd "$TARGET/src.new" && find . -type f -print0) | while IFS= read -r -d '' file; do
  if ! cmp -s "$TARGET/src.new/$file" "$TARGET/src/$file"; then
    mkdir -p "$(dirname "$TARGET/src/$file")"
    cp "$TARGET/src.new/$file" "$TARGET/src/$file"
  fi
done
(cd "$TARGET/src" && find . -path ./.data -prune -o -type f -print0) |
  while IFS= read -r -d '' file; do
    [ -e "$TARGET/src.new/$file" ] || rm -f "$TARGET/src/$file"
  done
rm -rf "$TARGET/src.new"
if [ -d "$ROOT/.data" ] && [ ! -d "$TARGET/src/.data" ]; then cp -a "$ROOT/.data" "$TARGET/src/.data"; fi

chroot "$TARGET" bash -c '
  set -euo pipefail
  echo "check_libtorch2: LibTorch $(dpkg-query -W -f="\${Version}" libtorch-dev), $(g++ --version | head -1)"
  cmake -S /src -B /build -DCMAKE_BUILD_TYPE=Release > /build-configure.log
  cmake --build /build --parallel "$(nproc)" > /build.log 2>&1 || { tail -40 /build.log; exit 1; }
  grep -E "warning:" /build.log || true
  cd /build && ctest --output-on-failure --parallel 1
'
