#!/usr/bin/env bash
# Installs what is missing, builds, and generates text with Baton.
#   scripts/main.sh [MODEL TOKENIZER [PROMPT]]
# MODEL is an RWKV-4 .pth or .safetensors, TOKENIZER a tokenizer.json, an RWKV World vocabulary or
# "bytes". Without them a small RANDOM model is made with `baton synth` (its output is noise: it
# only shows that everything runs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh build

model=${1:-}
tokenizer=${2:-bytes}
prompt=${3:-"The quick brown fox"}
if [ -z "$model" ]; then
  model=models/synth-L4-D256-V256.pth
  if [ ! -f "$model" ]; then
    echo "No model given: writing a small random RWKV-4 to $model (its output is noise)." >&2
    mkdir -p models
    build/baton synth --layers 4 --embd 256 --vocab 256 --dtype bf16 --seed 1 -o "$model"
  fi
  tokenizer=bytes
fi
device=cpu
if build/baton devices >/dev/null 2>&1; then device=vulkan; fi
exec build/baton run --model "$model" --tokenizer "$tokenizer" --prompt "$prompt" --max-tokens 64 --device "$device"
