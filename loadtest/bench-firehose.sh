#!/usr/bin/env bash
# The Firehose HTTP path through the load-test harness, verified (BENCHMARKS.md, "Serving"):
# RUNS runs, each against a fresh `vpcflowd serve` (an empty state directory), because the
# harness's traffic is seeded: sent twice to one server it is all late the second time, and
# --verify rightly fails. Needs the release binaries:
#   cargo build --release -p vpcflowd -p vpcflowd-loadtest
# Usage: RUNS=3 RECORDS=2000000 BATCH=500 CONCURRENCY=8 GZIP=1 loadtest/bench-firehose.sh [harness flags]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}; RECORDS=${RECORDS:-2000000}
# GZIP=0 sends uncompressed bodies (Firehose's default content encoding is none).
GZIP_FLAG=--gzip; [ "${GZIP:-1}" = 0 ] && GZIP_FLAG=
mkdir -p target/tmp
# The generated interfaces' own addresses, for the server and the expectation alike: requests
# racing each other reorder each interface's first records, from which addresses are otherwise
# learned.
target/release/vpcflowd generate --print-local-addresses --interfaces 100000 > target/tmp/bench-locals.json
for _ in $(seq "$RUNS"); do
  STATE=$(mktemp -d target/tmp/bench-firehose.XXXXXX)
  target/release/vpcflowd serve --listen 127.0.0.1:18080 --admin-listen 127.0.0.1:19464 --access-key k \
    --state-dir "$STATE" --max-flows 1000000 --local-addresses target/tmp/bench-locals.json > target/tmp/serve.out 2> target/tmp/serve.err &
  SV=$!
  until curl -sf http://127.0.0.1:19464/readyz > /dev/null; do sleep 0.1; done
  target/release/vpcflowd-loadtest firehose --url http://127.0.0.1:18080/ --admin http://127.0.0.1:19464 \
    --access-key k --records "$RECORDS" --batch "${BATCH:-500}" $GZIP_FLAG --concurrency "${CONCURRENCY:-8}" --pid $SV \
    --verify --max-flows 1000000 --local-addresses target/tmp/bench-locals.json "$@"
  kill $SV; wait $SV || true
  rm -rf "$STATE"
done
