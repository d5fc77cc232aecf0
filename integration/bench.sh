#!/usr/bin/env bash
# Runs a benchmark command with the environment's servers pinned to core 0
# and the command to the other cores, so that the client's own CPU does not
# come out of Cassandra's (as with clients and servers on separate machines).
# On a one-core machine it runs the command unpinned.
set -euo pipefail
run_dir="${TIDEMARK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tidemark}/run"
cores=$(nproc)
if [ "$cores" -lt 2 ] || ! command -v taskset >/dev/null; then
  exec "$@"
fi
pids=$(pgrep -f -- "$run_dir" || true)
for p in $pids; do taskset -a -cp 0 "$p" >/dev/null 2>&1 || true; done
restore() { for p in $pids; do taskset -a -cp "0-$((cores-1))" "$p" >/dev/null 2>&1 || true; done; }
trap restore EXIT
echo "bench: servers pinned to core 0, benchmark to cores 1-$((cores-1))"
taskset -c "1-$((cores-1))" "$@"
