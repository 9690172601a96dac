#!/usr/bin/env bash
# The README's two commands as a new user runs them on a fresh Debian 12 machine: in a Debian 12
# (bookworm) root made afresh with debootstrap --variant=minbase, with the sources, /etc/hosts
# and 0700 /root of a Debian 12 install and the file systems a booted one has mounted (/proc,
# /sys with its cgroups, which slurmd needs, /dev/shm, /dev/pts), this repository's HEAD
# commit is cloned to /root/project, and there, as root with a login shell's environment,
#     bash harness/scripts/quickstart.sh
#     bash harness/scripts/test.sh
# run one after the other; the check fails (exit 1) if either fails. What it checks is the
# commit, as CI's clean clone does: uncommitted changes are not in it (it says when there are).
#
#   sudo bash harness/scripts/check_fresh_debian.sh [ROOT_DIR]   (default /tmp/moelab-bookworm)
#
# Needs root (debootstrap, chroot, mount), Debian's archive and the npm registry; where the
# machine cannot host it, it says why and exits 3 (.ci/run then skips it). The root, its mounts
# and the processes in it are set up and torn down by debian_root.sh (shared with
# check_libtorch2.sh). Every check starts from nothing: an earlier root is deleted first, and a
# passing check's root is deleted after it; a failing one is kept for inspection
# (chroot ROOT_DIR bash). Logs: ROOT_DIR.quickstart.log, ROOT_DIR.test.log.
#
# Taken from this machine into the root: the clone, its compiler cache (read-only, below), and
# what its network needs: the proxy
# variables where set, and its trusted certificates for npm (NODE_EXTRA_CA_CERTS, for a
# TLS-intercepting proxy; a no-op elsewhere). As in any chroot, package scripts start no
# daemons there (policy-rc.d; test.sh starts the servers it needs itself), and as in Debian's
# container images dpkg does not sync each file it writes (force-unsafe-io).
# The .debs downloaded are kept in build/fresh-debian-cache/ and copied in at the next check:
# apt verifies each against the archive's index, so the cache only saves downloads.
# The host's compiler cache (ccache, where it has one: CI's clone built the same sources just
# before) is lent to the root read-only, as CCACHE_DIR with CCACHE_READONLY: the build in the
# root reuses an object only where the same compiler (by its contents) compiled the same
# preprocessed sources with the same flags (CMakeLists.txt makes the paths relative to the
# source folder), so it saves compile time and changes no object; everything else the two
# commands do runs from nothing. MOELAB_CHECK_NO_HOST_CCACHE=1 builds without it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEBIAN_ROOT_NAME=check_fresh_debian
# shellcheck source=harness/scripts/debian_root.sh
source "$ROOT/harness/scripts/debian_root.sh"
SECURITY_MIRROR="${DEBIAN_ROOT_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
CACHE="$(realpath -m "${MOELAB_BUILD_DIR:-$ROOT/build}/fresh-debian-cache")"
MARK=.moelab-check-fresh-debian
COMMANDS=("bash harness/scripts/quickstart.sh" "bash harness/scripts/test.sh")
LOGS=(quickstart test)

debian_root_host
TARGET="$(realpath -m "${1:-/tmp/moelab-bookworm}")"
case "$TARGET" in /|/root|/tmp|/home|/usr|/var|/etc) echo "check_fresh_debian: refusing root $TARGET" >&2; exit 2 ;; esac
if [ -e "$TARGET" ] && [ ! -e "$TARGET/$MARK" ] && [ -n "$(ls -A "$TARGET" 2>/dev/null)" ]; then
  echo "check_fresh_debian: $TARGET exists and was not made by this check; delete it or name another" >&2
  exit 2
fi
git() { command git -c safe.directory='*' "$@"; }
COMMIT="$(git -C "$ROOT" rev-parse --verify -q HEAD)" ||
  debian_root_unable "$ROOT is not a git checkout with a commit"
if [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ]; then
  echo "check_fresh_debian: note: uncommitted changes in $ROOT are not checked (commit them first)"
fi

save_cache() {  # the downloaded .debs, for the next check
  local archives="$TARGET/var/cache/apt/archives"
  if compgen -G "$archives/*.deb" >/dev/null; then
    mkdir -p "$CACHE/apt"
    cp -n "$archives"/*.deb "$CACHE/apt/" 2>/dev/null || true
  fi
}

started=$SECONDS
debian_root_trap "$TARGET" save_cache
debian_root_remove "$TARGET"
rm -f "$TARGET".*.log
mkdir -p "$TARGET" "$CACHE/debootstrap"
touch "$TARGET/$MARK"
debian_root_create "$TARGET" bookworm --cache-dir="$CACHE/debootstrap"

# What a Debian 12 install has and debootstrap does not make: its sources, /etc/hosts.
cat >"$TARGET/etc/apt/sources.list" <<EOF
deb $DEBIAN_ROOT_MIRROR bookworm main
deb $DEBIAN_ROOT_MIRROR bookworm-updates main
deb $SECURITY_MIRROR bookworm-security main
EOF
cat >"$TARGET/etc/hosts" <<EOF
127.0.0.1	localhost
127.0.1.1	$(hostname)
::1	localhost ip6-localhost ip6-loopback
EOF
# As in Debian's container images: dpkg does not sync every file (the root is thrown away).
echo force-unsafe-io >"$TARGET/etc/dpkg/dpkg.cfg.d/moelab-check-unsafe-io"
printf '#!/bin/sh\nexit 101\n' >"$TARGET/usr/sbin/policy-rc.d"
chmod 0755 "$TARGET/usr/sbin/policy-rc.d"
chmod 0700 "$TARGET/root"
if compgen -G "$CACHE/apt/*.deb" >/dev/null; then cp "$CACHE/apt/"*.deb "$TARGET/var/cache/apt/archives/"; fi
debian_root_mount "$TARGET" proc sys shm pts cgroup

git clone -q --no-hardlinks "$ROOT" "$TARGET/root/project" ||
  debian_root_unable "cannot clone $ROOT"
git -C "$TARGET/root/project" checkout -q --detach "$COMMIT" 2>/dev/null || {
  git -C "$TARGET/root/project" fetch -q origin "$COMMIT" &&
    git -C "$TARGET/root/project" checkout -q --detach "$COMMIT"; } ||
  debian_root_unable "cannot check out $COMMIT in the clone"

ENVIRONMENT=(HOME=/root USER=root LOGNAME=root SHELL=/bin/bash TERM=dumb
             PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
for variable in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
  if [ -n "${!variable:-}" ]; then ENVIRONMENT+=("$variable=${!variable}"); fi
done
certificates="${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}"
if [ -r "$certificates" ]; then
  mkdir -p "$TARGET/usr/local/share/moelab-check"
  cp "$certificates" "$TARGET/usr/local/share/moelab-check/host-certificates.pem"
  ENVIRONMENT+=(NODE_EXTRA_CA_CERTS=/usr/local/share/moelab-check/host-certificates.pem)
fi
host_ccache="$(ccache -k cache_dir 2>/dev/null || true)"
if [ -z "${MOELAB_CHECK_NO_HOST_CCACHE:-}" ] && [ -n "$host_ccache" ] && [ -d "$host_ccache" ]; then
  lent=/var/cache/moelab-host-ccache
  mkdir -p "$TARGET$lent"
  if mount --bind "$host_ccache" "$TARGET$lent" 2>/dev/null &&
     mount -o remount,bind,ro "$TARGET$lent" 2>/dev/null; then
    ENVIRONMENT+=(CCACHE_DIR=$lent CCACHE_READONLY=1 CCACHE_NOSTATS=1 CCACHE_TEMPDIR=/tmp)
    echo "check_fresh_debian: the host's compiler cache ($host_ccache) is lent read-only"
  else
    echo "check_fresh_debian: note: cannot lend the host's compiler cache; building without it"
  fi
fi
echo "check_fresh_debian: Debian $(cat "$TARGET/etc/debian_version") root ready in $((SECONDS - started)) s;" \
  "commit $(git -C "$ROOT" log -1 --format='%h %s' "$COMMIT" | cut -c1-60) in /root/project"

failed=0
summary=()
for i in "${!COMMANDS[@]}"; do
  command="${COMMANDS[$i]}"
  log="$TARGET.${LOGS[$i]}.log"
  echo "== check_fresh_debian: $(date +%T) /root/project# $command"
  step=$SECONDS
  status=0
  chroot "$TARGET" /usr/bin/env -i "${ENVIRONMENT[@]}" /bin/bash -l -c "cd /root/project && $command" \
    </dev/null 2>&1 | tee "$log" || status=$?
  summary+=("'$command': exit $status after $((SECONDS - step)) s")
  if [ "$status" -ne 0 ]; then failed=1; fi
done

echo "== check_fresh_debian: $((SECONDS - started)) s in all"
printf 'check_fresh_debian: %s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
  echo "check_fresh_debian: FAILED on a fresh Debian 12; logs $TARGET.{quickstart,test}.log;" \
    "the root is kept: chroot $TARGET bash" >&2
  exit 1
fi
save_cache
debian_root_remove "$TARGET"
echo "check_fresh_debian: passed (the root was deleted)"
