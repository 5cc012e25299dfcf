#!/usr/bin/env bash
# Installs what is missing, builds, and serves a model over gRPC on this machine.
#   scripts/main.sh [MODEL TOKENIZER]
# MODEL is an RWKV-4 .pth or .safetensors, TOKENIZER a tokenizer.json, an RWKV World vocabulary or
# "bytes". Without them a small RANDOM model is made with `baton synth`: its output is noise, it
# only shows that everything runs. The server listens on $BATON_LISTEN (default 127.0.0.1:50051)
# until Ctrl-C; from another terminal: build/baton generate --server 127.0.0.1:50051 --prompt Hi
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh build

model=${1:-}
tokenizer=${2:-bytes}
listen=${BATON_LISTEN:-127.0.0.1:50051}
if [ -z "$model" ]; then
  model=models/synth-L4-D256-V256.pth
  if [ ! -f "$model" ]; then
    echo "No model given: writing a small RANDOM RWKV-4 to $model (its output is noise)." >&2
    mkdir -p models
    build/baton synth --layers 4 --embd 256 --vocab 256 --dtype bf16 --seed 1 -o "$model"
  fi
  tokenizer=bytes
fi
# A GPU when Vulkan shows one; lavapipe (a CPU driver) is no faster than the CPU engine.
device=cpu
if build/baton devices 2>/dev/null | grep '^\*' | grep -qv '\[cpu,'; then device=vulkan; fi
echo "Serving $model on $device at $listen; try: build/baton generate --server $listen --prompt 'Hello'" >&2
exec build/baton serve --listen "$listen" --model "$model" --tokenizer "$tokenizer" --devices "$device"
