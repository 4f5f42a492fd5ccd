#!/bin/sh
# tools/bench_model.sh - one SFT training step (forward, backward, AdamW) of
# GPT-2 and Llama-family presets on this engine (`rlhf bench model`) next to
# the same model in PyTorch (tools/gpt2_ref.py bench for GPT-2, tools/llama_ref.py
# bench for llama-*, smollm2-* and qwen*; Debian's python3-torch), on the same
# machine, the same shapes and the same OpenBLAS core, run back to back and
# repeated in interleaved rounds; prints a side-by-side table with ratios.
#
#   tools/bench_model.sh [BUILD_DIR]            # default build-perf (Release)
#
# Environment:
#   CORES="Haswell SkylakeX"   OpenBLAS cores (OPENBLAS_CORETYPE), each run for both sides
#   PRESETS="tiny small gpt2"  presets; shapes below (same for both sides); the
#                              Llama family's too, e.g. PRESETS="small smollm2-135m"
#                              (llama-tiny, llama-mini, smollm2-135m, qwen2.5-0.5b)
#   ROUNDS=3                   interleaved rounds; the table shows the median
#                              over rounds of each run's median step time
#   TORCH_THREADS="1 2"        torch.set_num_threads values tried; the best is shown
#                              (TORCH_THREADS_gpt2=... etc. override it per preset)
#   QUIET_CMD=...              optional command run before each preset's runs of a round
#                              (e.g. one that waits until the machine is idle)
#   STEPS_tiny=20 STEPS_small=10 STEPS_gpt2=3   timed steps per run (after 2 warm-up)
#   SHAPE_tiny="8 32" SHAPE_small="8 128" SHAPE_gpt2="4 128"   B T per preset
#                              Llama family defaults (as `rlhf bench model`'s):
#                              llama-tiny 8 x 32, 10 steps; llama-mini 8 x 128, 10;
#                              smollm2-135m 4 x 128, 3; qwen2.5-0.5b 2 x 128, 2.
#                              In these variables' names (and TORCH_THREADS_*) a
#                              preset's '-' and '.' are written '_':
#                              SHAPE_smollm2_135m="2 64", STEPS_qwen2_5_0_5b=1
#   BASELINE=path/to/rlhf      optional: an older `rlhf` (with `bench model`) run in
#                              the same rounds, for before/after figures
#
# Why rounds: the machine may be shared, so one run can be slowed by other
# work (on the 2-vCPU VM this was written on, the hypervisor at times took
# half of both cores away for minutes). Each round runs every configuration
# once; the table gives the median over rounds of each run's median step,
# and the best step seen (other work only ever adds time, so the best is
# the steadiest estimate of what the code can do), with the spread. PyTorch gets its best thread count (its
# ATen threads; OpenBLAS's own pool is one thread per core either way), and
# which BLAS it calls is printed (torch.__config__ and the OpenBLAS loaded in
# its process).
set -eu

BUILD=${1:-build-perf}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RLHF="$ROOT/$BUILD/rlhf"
REF="$ROOT/tools/gpt2_ref.py"  # torch's BLAS report; the bench side is ref_for's
PY=/usr/bin/python3
CORES=${CORES:-"Haswell SkylakeX"}
PRESETS=${PRESETS:-"tiny small gpt2"}
ROUNDS=${ROUNDS:-3}
TORCH_THREADS=${TORCH_THREADS:-"1 2"}

[ -x "$RLHF" ] || { echo "bench_model.sh: $RLHF not found; build it first (cmake --build $BUILD)" >&2; exit 1; }
$PY -c "import torch" 2>/dev/null || { echo "bench_model.sh: $PY has no torch (apt install python3-torch)" >&2; exit 1; }

# a preset's name as part of a variable name: smollm2-135m -> smollm2_135m
var() { printf '%s' "$1" | tr -c 'A-Za-z0-9_' '_'; }
shape() { eval "echo \${SHAPE_$(var "$1"):-}"; }
steps() { eval "echo \${STEPS_$(var "$1"):-}"; }
default_shape() {
    case $1 in
    tiny) echo "8 32" ;; small) echo "8 128" ;; gpt2) echo "4 128" ;;
    llama-tiny) echo "8 32" ;; llama-mini) echo "8 128" ;; smollm2-135m) echo "4 128" ;; qwen2.5-0.5b) echo "2 128" ;;
    esac
}
default_steps() {
    case $1 in
    tiny) echo 20 ;; small) echo 10 ;; gpt2) echo 3 ;;
    llama-tiny) echo 10 ;; llama-mini) echo 10 ;; smollm2-135m) echo 3 ;; qwen2.5-0.5b) echo 2 ;;
    esac
}
# the PyTorch side of a preset: the Llama family's in tools/llama_ref.py
ref_for() { case $1 in llama-* | smollm2-* | qwen*) echo "$ROOT/tools/llama_ref.py" ;; *) echo "$ROOT/tools/gpt2_ref.py" ;; esac; }

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
            [ -z "${QUIET_CMD:-}" ] || sh -c "$QUIET_CMD" >&2 || true
            th_list=$(eval "echo \${TORCH_THREADS_$(var "$p"):-}"); [ -n "$th_list" ] || th_list=$TORCH_THREADS
            OPENBLAS_CORETYPE=$core "$RLHF" bench model --preset "$p" --batch "$B" --ctx "$T" \
                --steps "$n" --json | grep '^{' | sed "s/^{/{\"round\": $round, \"coretype\": \"$core\", /" >>"$OUT"
            if [ -n "${BASELINE:-}" ]; then
                OPENBLAS_CORETYPE=$core "$BASELINE" bench model --preset "$p" --batch "$B" --ctx "$T" \
                    --steps "$n" --json | grep '^{' |
                    sed "s/^{/{\"round\": $round, \"coretype\": \"$core\", /; s/\"side\": \"rlhf\"/\"side\": \"base\"/" >>"$OUT"
            fi
            for th in $th_list; do
                OPENBLAS_CORETYPE=$core $PY "$(ref_for "$p")" bench "$p" "$B" "$T" "$n" "$th" |
                    sed "s/^{/{\"round\": $round, \"coretype\": \"$core\", /" >>"$OUT"
            done
        done
    done
done

$PY - "$OUT" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
med = statistics.median
keys = []
for r in rows:
    k = (r["coretype"], r["preset"], r["B"], r["T"])
    if k not in keys:
        keys.append(k)
def pick(side, k):
    return [r for r in rows if r["side"] == side and (r["coretype"], r["preset"], r["B"], r["T"]) == k]
has_base = any(r["side"] == "base" for r in rows)
pw = max([6] + [len(k[1]) for k in keys])  # preset column width
print()
print("SFT step (forward + backward + AdamW) in ms: 'med' = median over rounds of each run's median")
print("step, 'best' = fastest step seen in any round; speedup = torch / rlhf")
print(f"{'core':9} {'preset':{pw}} {'B x T':9}| {'rlhf med':>8} {'best':>7} {'tok/s':>7} {'%peak':>6} {'peak':>5} "
      f"| {'torch med':>9} {'best':>7} {'thr':>3} | {'speedup':>7} {'best':>5} | rounds: rlhf / torch min-max"
      + (" | base med    best  gain" if has_base else ""))
for k in keys:
    core, p, B, T = k
    rl, th, base = pick("rlhf", k), pick("torch", k), pick("base", k)
    if not rl or not th:
        continue
    rl_ms, rl_best = med([r["ms"] for r in rl]), min(r["ms_min"] for r in rl)
    by_thr = {}
    for r in th:
        by_thr.setdefault(r["threads"], []).append(r)
    thr = min(by_thr, key=lambda t: med([r["ms"] for r in by_thr[t]]))
    t_ms, t_best = med([r["ms"] for r in by_thr[thr]]), min(r["ms_min"] for r in by_thr[thr])
    gf = rl[0]["gflop_per_step"]
    peak = max(r["sgemm_peak_gflops"] for r in rl)
    ach = gf / (rl_ms * 1e-3)
    line = (f"{core:9} {p:{pw}} {B:>3} x {T:<4}| {rl_ms:8.1f} {rl_best:7.1f} {B*T/(rl_ms*1e-3):7.0f} {100*ach/peak:5.1f}% "
            f"{peak:5.0f} | {t_ms:9.1f} {t_best:7.1f} {thr:3d} | {t_ms/rl_ms:6.2f}x {t_best/rl_best:4.2f}x | "
            f"{min(r['ms'] for r in rl):.1f}-{max(r['ms'] for r in rl):.1f} / "
            f"{min(r['ms'] for r in by_thr[thr]):.1f}-{max(r['ms'] for r in by_thr[thr]):.1f}")
    if base:
        b_ms, b_best = med([r["ms"] for r in base]), min(r["ms_min"] for r in base)
        line += f" | {b_ms:8.1f} {b_best:7.1f} {b_ms/rl_ms:4.2f}x"
    print(line)
    others = ", ".join(f"{t} thread{'s' if t > 1 else ''} {med([r['ms'] for r in v]):.1f} ms"
                       for t, v in sorted(by_thr.items()))
    print(f"{'':{pw + 20}}torch by thread count (medians): {others}")
print()
print("%peak = model GFLOP/s (at the median step) over the sgemm peak measured by `rlhf bench model`")
print("in the same run (best of OpenBLAS's own threads and the engine's split; highest over rounds).")
print("FLOPs per step: 6 N BT + 12 L T C BT (nanoGPT / PaLM), N = parameters without wpe.")
if any(k[1].startswith(("llama-", "smollm2-", "qwen")) for k in keys):
    print("Llama family: N = the GEMM weights (without the norms and an untied embedding), C = H * head_dim.")
if has_base:
    print("base = BASELINE binary (gain = base med / rlhf med).")
print("initial losses (rlhf / torch):", {f"{k[0]} {k[1]}": (
    round(pick("rlhf", k)[0]["loss"], 4), round(pick("torch", k)[0]["loss"], 4)) for k in keys
    if pick("rlhf", k) and pick("torch", k)})
EOF
