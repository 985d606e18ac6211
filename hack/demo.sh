#!/usr/bin/env bash
# `make demo`: the demo API on loopback, then `kubeload run examples/quickstart.yaml` against it.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
port=8787
out=${DEMO_OUT:-out}
mkdir -p "$out"
export KUBELOAD_DEMO_CLIENT_SECRET=${KUBELOAD_DEMO_CLIENT_SECRET:-demo-secret-$RANDOM$RANDOM}
"$bin/kubeload" demo-target --port "$port" --token-lifetime 6s --latency 2ms --secrets-from-env >"$out/demo-target.log" 2>&1 &
target=$!
trap 'kill $target 2>/dev/null; wait $target 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
  kill -0 $target 2>/dev/null || { echo "demo-target failed to start:"; cat "$out/demo-target.log"; exit 1; }
  sleep 0.1
done
"$bin/kubeload" run examples/quickstart.yaml --summary-export "$out/summary.json" --out "$out/report.html"
echo "report: $out/report.html   summary: $out/summary.json"
