#!/usr/bin/env bash
# Banditore side by side with its references, in one run: Alertmanager (latency, ingest), Postfix's
# smtp-sink and smtp-source -d (email fan-out), wrk (the load). Finds each tool on the PATH, or
# installs the Debian packages when it can (root, apt-get), then runs benches/compare.rs on the
# release binary and, with --all, the pipeline benchmark's probes and citizens rows.
#   benches/compare.sh [--quick] [latency|ingest|fanout ...]
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v wrk >/dev/null || missing+=(wrk)
{ command -v smtp-sink || [ -x /usr/sbin/smtp-sink ]; } >/dev/null || missing+=(postfix)
{ command -v alertmanager || command -v prometheus-alertmanager; } >/dev/null \
  || [ -n "${ALERTMANAGER:-}" ] || missing+=(prometheus-alertmanager)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]}" >&2
    apt-get update -qq >/dev/null
    # Postfix asks questions on install; the benchmark only needs its smtp-sink and smtp-source.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing: ${missing[*]} (install them, or set ALERTMANAGER to Alertmanager's binary); the rows without their reference print Banditore's side alone" >&2
  fi
fi
# The packaged Alertmanager may have been started as a service; the benchmark starts its own.
echo "machine: $(nproc) cores, $(awk '/model name/ {$1=$2=$3=""; print; exit}' /proc/cpuinfo | sed 's/^ *//'), $(uname -r)"
cargo bench --locked --bench compare -- "$@"
