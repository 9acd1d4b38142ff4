#!/bin/bash
# Paired rounds of bench/behind.py on two checkouts of gptapi (e.g. before and after a scheduler
# change), embedded model, shipped defaults (8 slots x 4096), 2 rounds x 3 scenarios each,
# alternating. Usage: bench/behind_rounds.sh OUT_DIR OLD_CHECKOUT (each with its own .venv)
OUT=${1:?usage: bench/behind_rounds.sh OUT_DIR OLD_CHECKOUT}
OLD=${2:?usage: bench/behind_rounds.sh OUT_DIR OLD_CHECKOUT}
NEW=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p $OUT
for round in 1 2; do
  for which in old new; do
    dir=$NEW; [ $which = old ] && dir=$OLD
    cd $dir
    GPTAPI_API_KEYS=behind-key-0123456789abcdef GPTAPI_LOG_DIR=$OUT/logs-$which-$round \
      .venv/bin/gptapi serve --port 18790 > $OUT/server-$which-$round.log 2>&1 &
    PID=$!
    for i in $(seq 1 120); do curl -sf http://127.0.0.1:18790/ready >/dev/null && break; sleep 0.5; done
    cd $NEW
    .venv/bin/python -m bench.behind --base-url http://127.0.0.1:18790 --api-key behind-key-0123456789abcdef \
      --rounds 3 --out $OUT/$which-$round > $OUT/$which-$round.log 2>&1
    echo "$which round $round:"; cat $OUT/$which-$round.log
    kill $PID; wait $PID 2>/dev/null
  done
done
