#!/bin/sh
# tools/bench_model.sh - one SFT training step (forward, backward, AdamW) of
# GPT-2 presets on this engine (`rlhf bench model`) next to the same model in
# PyTorch (tools/gpt2_ref.py bench, Debian's python3-torch), on the same
# machine, the same shapes and the same OpenBLAS core, run back to back and
# repeated in interleaved rounds; prints a side-by-side table with ratios.
#
#   tools/bench_model.sh [BUILD_DIR]            # default build-perf (Release)
#
# Environment:
#   CORES="Haswell SkylakeX"   OpenBLAS cores (OPENBLAS_CORETYPE), each run for both sides
#   PRESETS="tiny small gpt2"  presets; shapes below (same for both sides)
#   ROUNDS=3                   interleaved rounds; the table shows the median
#                              over rounds of each run's median step time
#   TORCH_THREADS="1 2"        torch.set_num_threads values tried; the best is shown
#   STEPS_tiny=20 STEPS_small=10 STEPS_gpt2=3   timed steps per run (after 2 warm-up)
#   SHAPE_tiny="8 32" SHAPE_small="8 128" SHAPE_gpt2="4 128"   B T per preset
#
# Why rounds: the machine may be shared, so one run can be slowed by other
# work. Each round runs every configuration once; the spread over rounds is
# printed so the noise is visible. PyTorch gets its best thread count (its
# ATen threads; OpenBLAS's own pool is one thread per core either way), and
# which BLAS it calls is printed (torch.__config__ and the OpenBLAS loaded in
# its process).
set -eu

BUILD=${1:-build-perf}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RLHF="$ROOT/$BUILD/rlhf"
REF="$ROOT/tools/gpt2_ref.py"
PY=/usr/bin/python3
CORES=${CORES:-"Haswell SkylakeX"}
PRESETS=${PRESETS:-"tiny small gpt2"}
ROUNDS=${ROUNDS:-3}
TORCH_THREADS=${TORCH_THREADS:-"1 2"}

[ -x "$RLHF" ] || { echo "bench_model.sh: $RLHF not found; build it first (cmake --build $BUILD)" >&2; exit 1; }
$PY -c "import torch" 2>/dev/null || { echo "bench_model.sh: $PY has no torch (apt install python3-torch)" >&2; exit 1; }

shape() { eval "echo \${SHAPE_$1:-}"; }
steps() { eval "echo \${STEPS_$1:-}"; }
default_shape() { case $1 in tiny) echo "8 32" ;; small) echo "8 128" ;; gpt2) echo "4 128" ;; esac; }
default_steps() { case $1 in tiny) echo 20 ;; small) echo 10 ;; gpt2) echo 3 ;; esac; }

OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
for core in $CORES; do
    echo "torch BLAS (OPENBLAS_CORETYPE=$core): $(OPENBLAS_CORETYPE=$core $PY "$REF" blas)"
done
echo "rlhf: $("$RLHF" --version), $BUILD"

for round in $(seq 1 "$ROUNDS"); do
    for core in $CORES; do
        for p in $PRESETS; do
            s=$(shape "$p"); [ -n "$s" ] || s=$(default_shape "$p")
            n=$(steps "$p"); [ -n "$n" ] || n=$(default_steps "$p")
            set -- $s
            B=$1 T=$2
            echo "round $round: $core $p B=$B T=$T" >&2
            OPENBLAS_CORETYPE=$core "$RLHF" bench model --preset "$p" --batch "$B" --ctx "$T" \
                --steps "$n" --json | grep '^{' | sed "s/^{/{\"round\": $round, \"coretype\": \"$core\", /" >>"$OUT"
            for th in $TORCH_THREADS; do
                OPENBLAS_CORETYPE=$core $PY "$REF" bench "$p" "$B" "$T" "$n" "$th" |
                    sed "s/^{/{\"round\": $round, \"coretype\": \"$core\", /" >>"$OUT"
            done
        done
    done
done

$PY - "$OUT" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def med(xs): return statistics.median(xs)
keys = []
for r in rows:
    k = (r["coretype"], r["preset"], r["B"], r["T"])
    if k not in keys: keys.append(k)
print()
print("SFT step (forward + backward + AdamW), median over rounds of per-run median step times")
print(f"{'core':9} {'preset':6} {'B x T':8} | {'rlhf ms':>9} {'tok/s':>8} {'GFLOP/s':>8} {'%peak':>6} "
      f"{'peak':>6} | {'torch ms':>9} {'thr':>3} {'tok/s':>8} | {'speedup':>7}  spread (rlhf / torch, min-max over rounds)")
for k in keys:
    core, p, B, T = k
    rl = [r for r in rows if r["side"] == "rlhf" and (r["coretype"], r["preset"], r["B"], r["T"]) == k]
    th = [r for r in rows if r["side"] == "torch" and (r["coretype"], r["preset"], r["B"], r["T"]) == k]
    if not rl or not th:
        continue
    rl_ms = med([r["ms"] for r in rl])
    by_threads = {}
    for r in th:
        by_threads.setdefault(r["threads"], []).append(r["ms"])
    best_thr = min(by_threads, key=lambda t: med(by_threads[t]))
    t_ms = med(by_threads[best_thr])
    gf = rl[0]["gflop_per_step"]
    peak = max(r["sgemm_peak_gflops"] for r in rl)
    ach = gf / (rl_ms * 1e-3)
    others = ", ".join(f"{t} thr {med(v):.1f} ms" for t, v in sorted(by_threads.items()))
    print(f"{core:9} {p:6} {B:>3} x {T:<4} | {rl_ms:9.2f} {B*T/(rl_ms*1e-3):8.0f} {ach:8.1f} {100*ach/peak:5.1f}% "
          f"{peak:6.0f} | {t_ms:9.2f} {best_thr:3d} {B*T/(t_ms*1e-3):8.0f} | {t_ms/rl_ms:6.2f}x  "
          f"{min(r['ms'] for r in rl):.1f}-{max(r['ms'] for r in rl):.1f} / "
          f"{min(by_threads[best_thr]):.1f}-{max(by_threads[best_thr]):.1f}  (torch: {others})")
print()
print("speedup = torch ms / rlhf ms (> 1: rlhf faster). %peak = model GFLOP/s over the sgemm peak")
print("measured by `rlhf bench model` in the same run (best of OpenBLAS's own threads and the")
print("engine's split, the highest over rounds). FLOPs per step: 6 N BT + 12 L T C BT (nanoGPT /")
print("PaLM), N = parameters without wpe; the same count is used for both sides.")
print("initial losses (rlhf / torch):", {f"{k[0]} {k[1]}": (
    round(next(r["loss"] for r in rows if r["side"] == "rlhf" and (r["coretype"], r["preset"]) == k[:2]), 4),
    round(next(r["loss"] for r in rows if r["side"] == "torch" and (r["coretype"], r["preset"]) == k[:2]), 4))
    for k in keys})
EOF
