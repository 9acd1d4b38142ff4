#!/usr/bin/env bash
# guidellm 0.8.1 goodput search vs gptapi-bench capacity, embedded model, shipped defaults,
# /v1/completions, generate prompts, 128 tokens, streamed, p95 TTFT <= 2 s and latency <= 10 s.
set -u
OUT=${1:?output folder (with prompts.json: bench/data/prompts.json x 12 variants, 128 tokens each)}
cd /work/main
K=gl-key-0123456789abcdef0123
start() { GPTAPI_API_KEYS=$K .venv/bin/gptapi serve --port 8100 > $OUT/server-$1.log 2>&1 & PID=$!; until curl -sf http://127.0.0.1:8100/ready >/dev/null; do sleep 1; done; }
start guidellm
echo "$(date +%T) guidellm goodput"
/tmp/glvenv/bin/guidellm run --backend kind=openai_http,target=http://127.0.0.1:8100,api_key=$K,model=gptapi,request_format=/v1/completions \
   --profile kind=goodput,initial_streams=4,max_streams=32,target_attainment=0.95,tolerance=0.1 \
   --metrics '{"kind":"generative","slo":{"ttft_ms":2000,"e2el_ms":10000}}' \
   --constraint kind=max_duration,seconds=40 --data kind=json_file,path=$OUT/prompts.json \
   --output kind=json,path=$OUT/guidellm-goodput.json --disable-console-interactive > $OUT/guidellm-goodput.log 2>&1
kill -INT $PID; wait $PID
start bench
echo "$(date +%T) gptapi-bench capacity"
.venv/bin/gptapi-bench capacity --base-url http://127.0.0.1:8100 --api-key $K --api openai --mix generate=1 --stream \
   --p95-ttft 2 --p95-latency 10 --max-users 32 --requests-per-user 3 --out $OUT/capacity > $OUT/capacity.log 2>&1
kill -INT $PID; wait $PID
echo "$(date +%T) done"
