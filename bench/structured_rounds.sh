#!/bin/bash
# Paired rounds on one server (embedded model, prompt cache off, limits lifted): /generate-text
# plain vs structured output (bench/data/schema-story.json), 10 users x 3 requests, 64 tokens,
# alternating, 3 rounds. Per-request decode rates and the grammar counters are in the server log
# (LOGLEVEL=debug). Usage: bench/structured_rounds.sh OUT_DIR
cd "$(dirname "$0")/.."
OUT=${1:?usage: bench/structured_rounds.sh OUT_DIR}
mkdir -p $OUT
export GPTAPI_API_KEYS=bench-key-0123456789abcdef GPTAPI_LOG_DIR=$OUT/server-logs \
  GPTAPI_MAX_QUEUE=10000 GPTAPI_RATE_LIMIT=1000000/minute GPTAPI_RATE_LIMIT_BURST=1000000/second \
  GPTAPI_TOKEN_RATE_LIMIT=1000000000/minute GPTAPI_MAX_INFLIGHT_PER_KEY=100000 GPTAPI_PROMPT_CACHE_MB=0
.venv/bin/gptapi serve --port 18777 --log-level ${LOGLEVEL:-info} > $OUT/server.log 2>&1 &
PID=$!
for i in $(seq 1 60); do curl -sf http://127.0.0.1:18777/ready >/dev/null && break; sleep 1; done
for round in 1 2 3; do
  for kind in plain schema; do
    extra=""; [ $kind = schema ] && extra="--json-schema bench/data/schema-story.json"
    .venv/bin/gptapi-bench run --base-url http://127.0.0.1:18777 --api-key bench-key-0123456789abcdef \
      --users 10 --requests-per-user 3 --max-tokens 64 --mix generate=1 $extra --out $OUT/$kind-$round > $OUT/$kind-$round.log 2>&1
    echo "$kind round $round: $(grep -m1 -i 'tok/s' $OUT/$kind-$round/report.md 2>/dev/null | head -1)"
  done
done
kill $PID; wait $PID 2>/dev/null
