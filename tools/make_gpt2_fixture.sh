#!/usr/bin/env bash
# tools/make_gpt2_fixture.sh - regenerates the GPT-2 reference fixture used by
# tests/test_checkpoint.c: a tiny random checkpoint written by rlhf, and the
# logits of an independent PyTorch implementation (tools/gpt2_ref.py, float64)
# on fixed ids. Run once after changing the tiny preset; needs python3-torch.
set -euo pipefail
cd "$(dirname "$0")/.."
out=tests/fixtures/gpt2
mkdir -p "$out"
./build/rlhf init-model --preset tiny --seed 7 -o "$out/tiny.safetensors"
/usr/bin/python3 tools/gpt2_ref.py logits "$out/tiny.safetensors" \
    "1,5,9,33,2,60,7,7,0,63;4,4,18,51,23,42,16,8,15,11" "$out/tiny_ref.safetensors"
