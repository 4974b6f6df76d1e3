#!/usr/bin/env bash
# The Kinesis path through the load-test harness (BENCHMARKS.md): kinesalite (installed by the
# tests into target/tmp/tools), `vpcflowd serve` reading the stream, the harness putting into it
# with --verify. Needs the release binaries: cargo build --release -p vpcflowd -p vpcflowd-loadtest
# Usage: SHARDS=4 RECORDS=2000000 PACKAGE=cloudwatch loadtest/bench-kinesis.sh [harness flags]
set -euo pipefail
cd "$(dirname "$0")/.."
SHARDS=${SHARDS:-4}; RECORDS=${RECORDS:-200000}; PACKAGE=${PACKAGE:-message}
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
node target/tmp/tools/node/kinesalite-local.js 0 > target/tmp/kinesalite.out 2>/dev/null &
KL=$!
while ! grep -q READY target/tmp/kinesalite.out; do sleep 0.1; done
PORT=$(awk '/READY/{print $2}' target/tmp/kinesalite.out); EP=http://127.0.0.1:$PORT
target/tmp/tools/venv/bin/python - <<PY
import boto3,time
k=boto3.client('kinesis',endpoint_url='$EP',region_name='us-east-1')
k.create_stream(StreamName='flows',ShardCount=$SHARDS)
while k.describe_stream_summary(StreamName='flows')['StreamDescriptionSummary']['StreamStatus']!='ACTIVE': time.sleep(0.05)
PY
target/release/vpcflowd serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:19464 --kinesis-stream flows --kinesis-endpoint $EP \
  --window 1m --slide 10s --lateness 30m --max-flows 1000000 > target/tmp/serve.out 2>target/tmp/serve.err &
SV=$!
until curl -sf http://127.0.0.1:19464/readyz >/dev/null; do sleep 0.1; done
target/release/vpcflowd-loadtest kinesis --stream flows --endpoint-url $EP --admin http://127.0.0.1:19464 \
  --records $RECORDS --event-rate 2000 --package $PACKAGE --window 1m --slide 10s --lateness 30m --max-flows 1000000 \
  --verify --verify-timeout 600s --pid $SV "$@"
kill $SV; wait $SV || true; kill $KL
