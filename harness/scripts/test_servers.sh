#!/usr/bin/env bash
# Starts or stops the real servers that moelab's tests talk to: a PostgreSQL cluster and a
# single-node Slurm cluster (munged, slurmctld, slurmd on this machine). `start` is idempotent:
# servers still answering are reused, stale ones are cleaned away and started afresh. It writes
# DIR/env (to be sourced by the tests) with the connection settings, or MOELAB_TEST_*_SKIP
# reasons for servers this machine cannot host.
# The servers' state (data, sockets, configuration, logs) lives in a folder of its own made
# under /tmp (named in DIR/state and DIR/env), not under DIR: the postgres user must reach it,
# and DIR is often inside a home it cannot enter (root's is 0700). `stop` copies the logs to
# DIR/logs and deletes that folder.
#   usage: test_servers.sh start|stop DIR
set -euo pipefail

if [ $# -ne 2 ] || { [ "$1" != start ] && [ "$1" != stop ]; }; then
  echo "usage: $0 start|stop DIR" >&2
  exit 2
fi
ACTION="$1"
if [ "$ACTION" = start ]; then mkdir -p "$2"; elif [ ! -d "$2" ]; then exit 0; fi
DIR="$(cd "$2" && pwd)"
STATE_PREFIX=/tmp/moelab-test-servers.
STATE=""
if [ -f "$DIR/state" ]; then
  STATE="$(cat "$DIR/state")"
  case "$STATE" in "$STATE_PREFIX"*) [ -d "$STATE" ] || STATE="" ;; *) STATE="" ;; esac
fi
HOST="$(hostname -s)"
PARTITION=debug
PG_BIN=""
for bin in /usr/lib/postgresql/*/bin; do if [ -x "$bin/pg_ctl" ]; then PG_BIN="$bin"; fi; done

use_state() {  # PG, SL and SLURM_CONF inside the state folder $STATE
  PG="$STATE/pg"
  SL="$STATE/slurm"
  export SLURM_CONF="$SL/slurm.conf"
}
if [ -n "$STATE" ]; then use_state; fi

new_state() {
  STATE="$(mktemp -d "${STATE_PREFIX}XXXXXX")"
  chmod 0755 "$STATE"
  echo "$STATE" >"$DIR/state"
  use_state
}

fail() {  # message [log file]
  echo "test_servers: $1" >&2
  if [ -n "${2:-}" ]; then echo "last lines of $2:" >&2; tail -n 30 "$2" >&2 || true; fi
  exit 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# From / : the postgres user may not be able to enter the current folder, and PostgreSQL's
# programs fail where they cannot return to it.
as_postgres() { (cd / && if is_root; then runuser -u postgres -- "$@"; else "$@"; fi); }

pg_skip_reason() {
  if [ -z "$PG_BIN" ]; then echo "postgresql not installed"
  elif is_root && ! id postgres >/dev/null 2>&1; then echo "no postgres system user"; fi
}

pg_answers() {
  [ -f "$PG/port" ] && "$PG_BIN/psql" -h 127.0.0.1 -p "$(cat "$PG/port")" -U moelab \
    -d moelab_test -Atc 'SELECT 1' >/dev/null 2>&1
}

stop_postgres() {
  if [ -n "$PG_BIN" ] && [ -f "$PG/data/postmaster.pid" ]; then
    as_postgres "$PG_BIN/pg_ctl" -D "$PG/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

free_port() {  # FIRST LAST: the first port in FIRST..LAST that nothing listens on
  local port
  for port in $(seq "$1" "$2"); do
    if ! ss -ltnH | awk '{print $4}' | grep -q ":$port\$"; then echo "$port"; return; fi
  done
  return 1
}

start_postgres() {
  local port
  if pg_answers; then return; fi
  stop_postgres
  rm -rf "$PG" && mkdir -p "$PG"
  if is_root; then chown postgres: "$PG"; fi
  port="$(free_port 54329 54428)" || fail "no free port in 54329-54428"
  as_postgres "$PG_BIN/initdb" -D "$PG/data" -U postgres -E UTF8 --no-locale --no-sync \
    >"$PG/initdb.log" 2>&1 || fail "initdb failed" "$PG/initdb.log"
  cat >>"$PG/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$PG'
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  cat >"$PG/data/pg_hba.conf" <<EOF
local all all trust
host all moelab_pw 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
EOF
  echo "$port" >"$PG/port"
  as_postgres "$PG_BIN/pg_ctl" -D "$PG/data" -l "$PG/postgres.log" -w start >/dev/null \
    || fail "postgres did not start" "$PG/postgres.log"
  as_postgres "$PG_BIN/psql" -h "$PG" -p "$port" -U postgres -d postgres -qX -v ON_ERROR_STOP=1 \
    -c "CREATE ROLE moelab LOGIN CREATEDB" -c "CREATE DATABASE moelab_test OWNER moelab" \
    -c "CREATE ROLE moelab_pw LOGIN PASSWORD 'secret-test-pw'" || fail "creating roles failed" "$PG/postgres.log"
}

slurm_skip_reason() {
  local command
  if ! is_root; then echo "not root: cannot start slurmd/munged"; return; fi
  for command in munged munge unmunge slurmctld slurmd sbatch sinfo; do
    command -v "$command" >/dev/null || { echo "$command not installed"; return; }
  done
  # Slurm 22.05's slurmd starts its cgroup plugin whatever the configuration says.
  if ! mountpoint -q /sys/fs/cgroup 2>/dev/null; then
    echo "no cgroup file system at /sys/fs/cgroup (slurmd needs one)"
  fi
}

munge_answers() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
  local i
  if munge_answers; then return; fi
  mkdir -p /run/munge /etc/munge /var/lib/munge /var/log/munge
  chown munge: /run/munge /etc/munge /var/lib/munge /var/log/munge
  if [ ! -f /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown munge: /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  runuser -u munge -- munged --force || fail "munged did not start" /var/log/munge/munged.log
  for i in $(seq 50); do munge_answers && return; sleep 0.1; done
  fail "munged does not answer (waited $i tenths of a second)" /var/log/munge/munged.log
}

pid_alive() {  # DIR/slurm/NAME.pid names a live process called NAME
  local pid
  pid="$(cat "$1" 2>/dev/null)" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$(basename "$1" .pid)" ]
}

node_state() { timeout 5 sinfo -h -n "$HOST" -o %t 2>/dev/null || true; }

slurm_answers() {
  munge_answers && pid_alive "$SL/slurmctld.pid" && pid_alive "$SL/slurmd.pid" \
    && [[ "$(node_state)" =~ ^(idle|mix|alloc)$ ]]
}

stop_pidfile() {  # pid file: TERM, wait up to 10 s, then KILL
  local pid i
  pid_alive "$1" || { rm -f "$1"; return; }
  pid="$(cat "$1")"
  kill "$pid" 2>/dev/null || true
  for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then echo "killing $1 after $i tenths of a second" >&2; kill -9 "$pid"; fi
  rm -f "$1"
}

cancel_jobs() {  # so that no job's processes outlive slurmd
  local i
  pid_alive "$SL/slurmctld.pid" || return 0
  squeue -h -o %A | xargs -r scancel 2>/dev/null || true
  for i in $(seq 150); do [ -z "$(squeue -h -t R,CG -o %A 2>/dev/null)" ] && return; sleep 0.1; done
  echo "jobs still running after $i tenths of a second" >&2
}

stop_slurm() {
  cancel_jobs
  stop_pidfile "$SL/slurmd.pid"
  stop_pidfile "$SL/slurmctld.pid"
}

write_slurm_conf() {  # slurmctld port, slurmd port
  cat >"$SLURM_CONF" <<EOF
ClusterName=moelabtest
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$1
SlurmdPort=$2
SlurmUser=root
AuthInfo=cred_expire=10
StateSaveLocation=$SL/state
SlurmdSpoolDir=$SL/spool
SlurmctldPidFile=$SL/slurmctld.pid
SlurmdPidFile=$SL/slurmd.pid
SlurmctldLogFile=$SL/slurmctld.log
SlurmdLogFile=$SL/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=1
MpiDefault=none
JobRequeue=1
ReturnToService=2
KillWait=10
MinJobAge=60
MaxArraySize=1001
MailProg=/bin/true
$(slurmd -C | sed -n 1p) NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
}

wait_node_idle() {
  local deadline=$((SECONDS + 30)) daemon
  until [ "$(node_state)" = idle ]; do
    for daemon in slurmctld slurmd; do
      if [ -f "$SL/$daemon.pid" ] && ! pid_alive "$SL/$daemon.pid"; then
        fail "$daemon exited" "$SL/$daemon.log"
      fi
    done
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 30 "$SL/slurmd.log" >&2 || true
      fail "node $HOST not idle after 30 s (state '$(node_state)')" "$SL/slurmctld.log"
    fi
    sleep 0.2
  done
}

start_slurm() {
  local ctld_port slurmd_port
  start_munge
  if slurm_answers; then return; fi
  stop_slurm
  rm -rf "$SL" && mkdir -p "$SL/state" "$SL/spool"
  # Free ports (Slurm's own 6817 and 6818 where free), so that another test run's Slurm, or a
  # real one, on this machine is no obstacle.
  ctld_port="$(free_port 6817 6916)" || fail "no free port in 6817-6916"
  slurmd_port="$(free_port $((ctld_port + 1)) 6917)" || fail "no free port in $((ctld_port + 1))-6917"
  write_slurm_conf "$ctld_port" "$slurmd_port"
  slurmctld -f "$SLURM_CONF" || fail "slurmctld did not start" "$SL/slurmctld.log"
  slurmd -f "$SLURM_CONF" || fail "slurmd did not start" "$SL/slurmd.log"
  wait_node_idle
}

start() {
  local pg_skip slurm_skip
  pg_skip="$(pg_skip_reason)"
  slurm_skip="$(slurm_skip_reason)"
  stop_old_layout
  if [ -z "$STATE" ]; then new_state; fi
  [ -n "$pg_skip" ] || start_postgres
  [ -n "$slurm_skip" ] || start_slurm
  {
    printf '# server state (data, sockets, logs): %s\n' "$STATE"
    if [ -n "$pg_skip" ]; then printf 'export MOELAB_TEST_POSTGRES_SKIP=%q\n' "$pg_skip"
    else
      printf 'export MOELAB_TEST_POSTGRES=%q\n' "postgresql://moelab@127.0.0.1:$(cat "$PG/port")/moelab_test"
      printf 'export MOELAB_TEST_POSTGRES_PW_ROLE=moelab_pw\n'
    fi
    if [ -n "$slurm_skip" ]; then printf 'export MOELAB_TEST_SLURM_SKIP=%q\n' "$slurm_skip"
    else
      printf 'export MOELAB_TEST_SLURM=1\nexport MOELAB_TEST_SLURM_PARTITION=%q\n' "$PARTITION"
      printf 'export SLURM_CONF=%q\n' "$SLURM_CONF"
    fi
  } >"$DIR/env"
  cat "$DIR/env"
}

save_logs() {
  local log
  mkdir -p "$DIR/logs"
  for log in "$PG/initdb.log" "$PG/postgres.log" "$SL/slurmctld.log" "$SL/slurmd.log"; do
    if [ -f "$log" ]; then cp "$log" "$DIR/logs/$(basename "$(dirname "$log")")-$(basename "$log")"; fi
  done
}

stop_old_layout() {  # servers started by an earlier version of this script, with state in DIR
  if [ -d "$DIR/pg" ] || [ -d "$DIR/slurm" ]; then
    (PG="$DIR/pg"; SL="$DIR/slurm"; export SLURM_CONF="$SL/slurm.conf"; stop_postgres; stop_slurm)
    rm -rf "$DIR/pg" "$DIR/slurm"
  fi
}

stop() {
  stop_old_layout
  if [ -n "$STATE" ]; then
    stop_postgres
    stop_slurm
    save_logs
    rm -rf "$STATE"
  fi
  rm -f "$DIR/state"
  if is_root && command -v munged >/dev/null && munge_answers; then munged --stop >/dev/null || true; fi
}

"$ACTION"
