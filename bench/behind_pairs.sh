#!/bin/bash
# Paired rounds of bench/behind.py between two servers, one at a time, the order alternating:
# 2 rounds x ROUNDS scenarios each. A server is a gptapi checkout (its own .venv, shipped
# defaults: 8 slots x 4096) or llama.cpp's llama-server as "llama-server:/path/to/binary"
# (-t 2 -np 8 -c 32768: 4096 per slot; build it outside the repository, ../shared/anchors.md).
# Usage: bench/behind_pairs.sh OUT_DIR SERVER_A SERVER_B
#   MODEL=file.gguf (default: the embedded model)  DOC_ENTRIES=110 (document length)  ROUNDS=3
# e.g. bench/behind_pairs.sh out ../old-checkout .          (before/after a scheduler change)
#      MODEL=twin.gguf DOC_ENTRIES=11 ROUNDS=2 bench/behind_pairs.sh out . llama-server:/path
set -u
OUT=${1:?usage: bench/behind_pairs.sh OUT_DIR SERVER_A SERVER_B}
A=${2:?usage: bench/behind_pairs.sh OUT_DIR SERVER_A SERVER_B}
B=${3:?usage: bench/behind_pairs.sh OUT_DIR SERVER_A SERVER_B}
HERE=$(cd "$(dirname "$0")/.." && pwd)
MODEL=${MODEL:-$("$HERE/.venv/bin/python" -c "from gptapi.modelfile import embedded_model_path; print(embedded_model_path())")}
KEY=behind-key-0123456789abcdef
PORT=18791
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
name() { case $1 in llama-server:*) echo llama-server;; *) basename "$(cd "$1" && pwd)";; esac; }
for round in 1 2; do
  order="A B"; [ $round = 2 ] && order="B A"
  for which in $order; do
    server=$A; [ $which = B ] && server=$B
    label=$which-$(name "$server")-$round
    case $server in
      llama-server:*)
        "${server#llama-server:}" -m "$MODEL" -t 2 -np 8 -c 32768 --port $PORT --api-key $KEY \
          > "$OUT/server-$label.log" 2>&1 & ;;
      *)
        (cd "$server" && GPTAPI_MODEL_PATH="$MODEL" GPTAPI_API_KEYS=$KEY GPTAPI_LOG_DIR="$OUT/logs-$label" \
          exec .venv/bin/gptapi serve --port $PORT > "$OUT/server-$label.log" 2>&1) & ;;
    esac
    PID=$!
    ready=/ready; [[ $server == llama-server:* ]] && ready=/health  # 200 once the model is loaded
    for i in $(seq 1 600); do
      curl -sf -H "Authorization: Bearer $KEY" http://127.0.0.1:$PORT$ready >/dev/null && break; sleep 0.5
    done
    sleep 1
    "$HERE/.venv/bin/python" -m bench.behind --base-url http://127.0.0.1:$PORT --api-key $KEY \
      --rounds "${ROUNDS:-3}" --doc-entries "${DOC_ENTRIES:-110}" --out "$OUT/$label" > "$OUT/$label.log" 2>&1
    echo "$label:"; grep '^{' "$OUT/$label.log"
    kill $PID; wait $PID 2>/dev/null
  done
done
