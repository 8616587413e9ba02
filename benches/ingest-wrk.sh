#!/usr/bin/env bash
# Ingest throughput of the release binary under wrk (Debian package `wrk`), a load generator
# lighter than the Rust one in benches/pipeline.rs, so the two cores go to the server.
# Each request is one Alertmanager alert (the same fingerprint: the refresh path of a storm).
#   cargo build --release && benches/ingest-wrk.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/banditore
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
token=bench-ingest-token-0123456789
cat > "$work/banditore.toml" <<TOML
[server]
listen = "127.0.0.1:18081"
[store]
url = "sqlite://$work/banditore.db"
[channels.email]
enabled = false
[[auth.tokens]]
name = "bench"
token = "$token"
roles = ["ingest"]
TOML
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
wrk.body = [[{"version":"4","status":"firing","receiver":"bench","alerts":[{"status":"firing","labels":{"alertname":"Bench","service":"cup-backend","instance":"h1","severity":"warning"},"annotations":{"summary":"bench"},"startsAt":"2026-11-26T09:14:03Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"0000000000000001"}]}]]
LUA
for connections in 16 64 128; do
  rm -f "$work"/banditore.db*
  "$bin" --config "$work/banditore.toml" serve 2>/dev/null &
  pid=$!
  until curl -sf http://127.0.0.1:18081/readyz >/dev/null; do sleep 0.1; done
  printf 'wrk, %3d connections, 1 alert per request: ' "$connections"
  wrk -t2 -c"$connections" -d10s -s "$work/post.lua" http://127.0.0.1:18081/api/v1/signals/alertmanager \
    | awk '/Latency/ {lat = $2; max = $4} /Requests\/sec/ {rps = $2} END {printf "%s signals/s, latency avg %s, max %s, ", rps, lat, max}'
  printf 'resident memory %s\n' "$(awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' /proc/$pid/status)"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
