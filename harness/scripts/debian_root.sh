# shellcheck shell=bash
# Shared by the checks that run moelab in a Debian root made with debootstrap
# (check_libtorch2.sh: Debian 13; check_fresh_debian.sh: a fresh Debian 12). Source it after
# setting DEBIAN_ROOT_NAME (the prefix of messages); it defines no behaviour on its own.
#
#   debian_root_unable MESSAGE            this machine cannot host the check: say why, exit 3
#   debian_root_host                      needs root; installs debootstrap when absent
#   debian_root_create TARGET SUITE       debootstrap --variant=minbase (unless TARGET has apt)
#   debian_root_mount TARGET KIND...      mounts proc | sys | shm (a tmpfs on /dev/shm) |
#                                         pts (a devpts of its own on /dev/pts) | cgroup (this
#                                         machine's /sys/fs/cgroup, after sys; as a slave) there
#   debian_root_trap TARGET [COMMAND]     on any exit: COMMAND, then debian_root_teardown
#   debian_root_teardown TARGET           ends the processes whose root is TARGET, unmounts
#                                         everything under it (innermost first)
#   debian_root_remove TARGET             teardown, then deletes TARGET (never across a mount)
#   debian_root_install TARGET LOG PKG... apt-get installs those of PKG missing in TARGET
# Only the mounts made here go inside TARGET (proc, sysfs, tmpfs, devpts, the cgroup tree; no
# host folder), deletion never crosses a mount, and unmounting a slave never reaches the host.

DEBIAN_ROOT_MIRROR="${DEBIAN_ROOT_MIRROR:-http://deb.debian.org/debian}"

debian_root_unable() {
  echo "$DEBIAN_ROOT_NAME: cannot run here: $*" >&2
  exit 3
}

debian_root_host() {
  [ "$(id -u)" -eq 0 ] || debian_root_unable "needs root (debootstrap, chroot, mount)"
  command -v chroot >/dev/null 2>&1 || debian_root_unable "no chroot command"
  if ! command -v debootstrap >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; } \
      >/dev/null 2>&1 || debian_root_unable "cannot install debootstrap (apt-get install debootstrap)"
  fi
}

debian_root_create() {  # TARGET SUITE [debootstrap options]
  local target="$1" suite="$2"
  shift 2
  if [ -x "$target/usr/bin/apt-get" ]; then return; fi
  echo "$DEBIAN_ROOT_NAME: creating a Debian $suite root in $target"
  mkdir -p "$target"
  debootstrap --variant=minbase "$@" "$suite" "$target" "$DEBIAN_ROOT_MIRROR" \
    >"$target.debootstrap.log" 2>&1 ||
    debian_root_unable "debootstrap $suite failed (see $target.debootstrap.log; delete $target to retry)"
}

# The mount points under TARGET, innermost first (from this process's mount table).
debian_root_mounts() {
  local target="$1"
  awk -v t="$target" '{
      p = $5; gsub(/\\040/, " ", p)
      if (p == t || index(p, t "/") == 1) print length(p) "\t" p
    }' /proc/self/mountinfo | sort -rn | cut -f2-
}

debian_root_any_alive() {  # PID...
  local pid
  for pid in "$@"; do if kill -0 "$pid" 2>/dev/null; then return 0; fi; done
  return 1
}

debian_root_kill() {  # ends the processes whose root directory is TARGET: TERM, then KILL
  local target="$1" signal pid pids
  for signal in TERM KILL; do
    pids=()
    for pid in /proc/[0-9]*; do
      if [ "$(readlink "$pid/root" 2>/dev/null)" = "$target" ]; then pids+=("${pid#/proc/}"); fi
    done
    [ "${#pids[@]}" -gt 0 ] || return 0
    echo "$DEBIAN_ROOT_NAME: ending processes left in $target (SIG$signal): ${pids[*]}" >&2
    kill "-$signal" "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 50); do
      debian_root_any_alive "${pids[@]}" || return 0
      sleep 0.1
    done
  done
}

debian_root_teardown() {
  local target="$1" point
  [ -d "$target" ] || return 0
  debian_root_kill "$target"
  while IFS= read -r point; do
    [ -n "$point" ] || continue
    umount "$point" 2>/dev/null || umount -l "$point" 2>/dev/null ||
      echo "$DEBIAN_ROOT_NAME: warning: cannot unmount $point" >&2
  done < <(debian_root_mounts "$target")
}

debian_root_mount() {  # TARGET proc|sys|shm...
  local target="$1" kind
  shift
  for kind in "$@"; do
    case "$kind" in
      proc) mountpoint -q "$target/proc" || mount -t proc proc "$target/proc" 2>/dev/null ;;
      sys) mountpoint -q "$target/sys" || mount -t sysfs sysfs "$target/sys" 2>/dev/null ;;
      shm) mkdir -p "$target/dev/shm" && { mountpoint -q "$target/dev/shm" ||
             mount -t tmpfs -o mode=1777,nosuid,nodev shm "$target/dev/shm" 2>/dev/null; } ;;
      pts) mkdir -p "$target/dev/pts" && { mountpoint -q "$target/dev/pts" ||
             mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$target/dev/pts" 2>/dev/null; } ;;
      cgroup) mountpoint -q /sys/fs/cgroup && mountpoint -q "$target/sys" &&
                { mountpoint -q "$target/sys/fs/cgroup" || {
                  mount --rbind /sys/fs/cgroup "$target/sys/fs/cgroup" &&
                    mount --make-rslave "$target/sys/fs/cgroup"; } 2>/dev/null; } ;;
      *) false ;;
    esac || debian_root_unable "cannot mount $kind in $target"
  done
}

# Tears TARGET down on any exit of the calling script (Ctrl-C and TERM included), after
# running the caller's own clean-up command, if given.
debian_root_trap() {  # TARGET [COMMAND]
  # shellcheck disable=SC2064  # expanded now, on purpose
  trap "${2:+$2; }debian_root_teardown '$1'" EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

debian_root_remove() {
  local target="$1"
  [ -e "$target" ] || return 0
  debian_root_teardown "$target"
  if [ -n "$(debian_root_mounts "$target")" ]; then
    debian_root_unable "$target still has mounts; not deleting it"
  fi
  rm -rf --one-file-system "$target"
}

debian_root_install() {  # TARGET LOG PACKAGE...
  local target="$1" log="$2" package missing=()
  shift 2
  for package in "$@"; do
    chroot "$target" dpkg-query -W -f='${Status}' "$package" 2>/dev/null |
      grep -q "install ok installed" || missing+=("$package")
  done
  [ "${#missing[@]}" -gt 0 ] || return 0
  echo "$DEBIAN_ROOT_NAME: installing in $target: ${missing[*]}"
  { chroot "$target" apt-get update -qq &&
    chroot "$target" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1
}
