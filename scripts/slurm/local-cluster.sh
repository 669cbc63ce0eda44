#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, for vaelab's Slurm test and for trying `vaelab slurm`.
#   scripts/slurm/local-cluster.sh install   # apt-get install slurm-wlm munge (root)
#   scripts/slurm/local-cluster.sh start     # munged + slurmctld + slurmd as root, state under $SLURM_LOCAL_DIR
#   scripts/slurm/local-cluster.sh stop      # stop the daemons by their pid files
# Needs root (the daemons run as root, without systemd). SLURM_LOCAL_DIR defaults to /tmp/vaelab-slurm.
set -euo pipefail
DIR="${SLURM_LOCAL_DIR:-/tmp/vaelab-slurm}"
CONF=/etc/slurm/slurm.conf

install() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q slurm-wlm munge >/dev/null; }
}

start() {
  if command -v sinfo >/dev/null && pgrep -x slurmctld >/dev/null && sinfo -h -o '%T' 2>/dev/null | grep -qE '^idle'; then
    echo "slurm: already up ($(sinfo -h -o '%N %c CPUs %T'))"; return 0
  fi
  stop >/dev/null 2>&1 || true
  command -v slurmctld >/dev/null || install
  # A fresh cluster each time: no jobs or node states recovered from an earlier one.
  rm -rf "$DIR"
  mkdir -p "$DIR"/{state,spool,log,run} /run/munge /etc/slurm
  [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; }
  chown -R munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
  chmod 400 /etc/munge/munge.key
  if ! pgrep -x munged >/dev/null; then
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged --force
  fi
  for _ in $(seq 1 20); do [ -S /run/munge/munge.socket.2 ] && break; sleep 0.25; done
  local cpus mem; cpus=$(nproc); mem=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 - 512 ))
  cat > "$CONF" <<CONF
ClusterName=vaelab-local
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
NodeName=localhost CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
  pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
  pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
  for _ in $(seq 1 60); do
    if sinfo -h -o '%T' 2>/dev/null | grep -qE '^idle'; then echo "slurm: up ($(sinfo -h -o '%N %c CPUs %T'))"; return 0; fi
    sleep 0.5
  done
  echo "slurm: did not come up; logs in $DIR/log" >&2
  tail -n 20 "$DIR"/log/*.log >&2 || true
  return 1
}

stop() {
  for p in slurmd slurmctld; do
    if [ -f "$DIR/run/$p.pid" ]; then kill "$(cat "$DIR/run/$p.pid")" 2>/dev/null || true; rm -f "$DIR/run/$p.pid"; fi
  done
  for p in slurmd slurmctld munged; do
    for _ in $(seq 1 20); do pgrep -x "$p" >/dev/null || break; pkill -x "$p" 2>/dev/null || true; sleep 0.25; done
    pkill -9 -x "$p" 2>/dev/null || true
  done
  rm -f /run/munge/munged.pid
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
