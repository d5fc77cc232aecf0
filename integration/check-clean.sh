#!/usr/bin/env bash
# Fails if a Cassandra or Kafka process of the environment is still running,
# or one of its ports is still taken, after `tidemark-env down`.
set -u
run_dir="${TIDEMARK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tidemark}/run"
left=$(pgrep -f -- "$run_dir" || true)
if [ -n "$left" ]; then
  echo "check-clean: processes still running after teardown:"; ps -o pid,args -p $left | cut -c1-160
  exit 1
fi
for i in $(seq 1 40); do
  taken=$(ss -Hltn 2>/dev/null | awk '{print $4}' | grep -E '^127\.0\.0\.[0-9]+:(9042|7000)$|^127\.0\.0\.1:2909[23]$' || true)
  [ -z "$taken" ] && break
  sleep 0.25
done
if [ -n "$taken" ]; then echo "check-clean: ports still taken: $taken"; exit 1; fi
echo "check-clean: no environment process or port left"
