#!/bin/bash
# Paired rounds of bench/behind.py: llama.cpp's llama-server (-np 8 -c 32768: 4096 per slot)
# and gptapi at its shipped defaults, one at a time, the order alternating, 2 rounds x 3
# scenarios, embedded model. Build llama-server outside the repository (../shared/anchors.md).
# Usage: bench/behind_vs_llama_server.sh OUT_DIR /path/to/llama-server
OUT=${1:?usage: bench/behind_vs_llama_server.sh OUT_DIR LLAMA_SERVER}
LS=${2:?usage: bench/behind_vs_llama_server.sh OUT_DIR LLAMA_SERVER}
EMB=$("$(dirname "$0")/../.venv/bin/python" -c "from gptapi.modelfile import embedded_model_path; print(embedded_model_path())")
KEY=behind-key-0123456789abcdef
mkdir -p $OUT
cd "$(dirname "$0")/.."
for round in 1 2; do
  order="llama gptapi"; [ $round = 2 ] && order="gptapi llama"
  for which in $order; do
    if [ $which = llama ]; then
      $LS -m $EMB -t 2 -np 8 -c 32768 --port 18791 --api-key $KEY > $OUT/server-$which-$round.log 2>&1 &
    else
      GPTAPI_API_KEYS=$KEY GPTAPI_LOG_DIR=$OUT/logs-$round .venv/bin/gptapi serve --port 18791 > $OUT/server-$which-$round.log 2>&1 &
    fi
    PID=$!
    for i in $(seq 1 120); do curl -sf -H "Authorization: Bearer $KEY" http://127.0.0.1:18791/health >/dev/null && break; sleep 0.5; done
    sleep 1
    .venv/bin/python -m bench.behind --base-url http://127.0.0.1:18791 --api-key $KEY --rounds 3 --out $OUT/$which-$round > $OUT/$which-$round.log 2>&1
    echo "$which round $round:"; grep '^{' $OUT/$which-$round.log
    kill $PID; wait $PID 2>/dev/null
  done
done
