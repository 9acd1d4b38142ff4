#!/usr/bin/env bash
set -u
cd /work/main
K1=bench-key-0123456789abcdef01; K2=guid-key-0123456789abcdef012
GPTAPI_API_KEYS=$K1,$K2 GPTAPI_LOG_DIR=OUT/logs2 .venv/bin/gptapi serve --port 8100 > OUT/server2.log 2>&1 &
PID=$!
until curl -sf http://127.0.0.1:8100/ready >/dev/null; do sleep 1; done
for r in 1 2; do
  echo "$(date +%T) gptapi-bench round $r"
  .venv/bin/gptapi-bench run --base-url http://127.0.0.1:8100 --api-key $K1 --api openai --mix generate=1 --stream \
     --users 8 --requests-per-user 4 --max-tokens 128 --server-pid $PID --out OUT/gb-$r > OUT/gb-$r.log 2>&1
  echo "$(date +%T) guidellm round $r"
  guidellm run --backend kind=openai_http,target=http://127.0.0.1:8100,api_key=$K2,model=gptapi,request_format=/v1/completions \
     --profile kind=concurrent,streams=8 --constraint kind=max_requests,count=32 --data kind=json_file,path=OUT/prompts-$r.json \
     --output kind=json,path=OUT/gl-$r.json --disable-console-interactive > OUT/gl-$r.log 2>&1
done
kill $PID; wait $PID
echo "$(date +%T) done"
