#!/usr/bin/env bash
# tools/bootstrap.sh - installs the Debian packages rlhf needs (when missing),
# builds, and runs either the main job or the whole test suite.
#
#   bash tools/bootstrap.sh run    # build, then the main job: rlhf info, the gradient check of
#                                  # every op, and the RLHF / Safe RLHF pipeline
#                                  # (recipes/pipelines/safe_rlhf_demo.pipeline) with its results table
#   bash tools/bootstrap.sh test   # build, then every test: plain, ASan+UBSan, and valgrind
#   bash tools/bootstrap.sh build  # install and build only
#
# Works on a fresh Debian 12 machine as root (or with sudo).
set -euo pipefail

cd "$(dirname "$0")/.."
mode="${1:-run}"
jobs="$(nproc 2>/dev/null || echo 2)"

packages=(build-essential cmake pkg-config libopenblas-dev libffi-dev libcmocka-dev graphviz
          valgrind libjansson-dev libutf8proc-dev zlib1g-dev gnuplot-nox)

install_missing() {
    local missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "bootstrap: installing ${missing[*]}"
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "bootstrap: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
        sudo="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

build() { # build DIR [--target T] [cmake args...]
    local dir="$1"; shift
    local target=()
    if [ "${1:-}" = --target ]; then target=(--target "$2"); shift 2; fi
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
    cmake --build "$dir" -j "$jobs" "${target[@]}"
}

install_missing
case "$mode" in
build)
    build build
    ;;
run)
    build build --target rlhf
    # OpenBLAS 0.3.21 picks an older kernel than an AVX-512 CPU can run (or the
    # environment pins one); the main job is GEMM-bound, so use the CPU's own
    if grep -qw avx512f /proc/cpuinfo 2>/dev/null && [ "${OPENBLAS_CORETYPE:-}" != SkylakeX ]; then
        echo "bootstrap: this CPU has AVX-512: running with OPENBLAS_CORETYPE=SkylakeX (was '${OPENBLAS_CORETYPE:-unset}')"
        export OPENBLAS_CORETYPE=SkylakeX
    fi
    ./build/rlhf info
    echo
    ./build/rlhf gradcheck --all
    echo
    ./build/rlhf pipeline recipes/pipelines/safe_rlhf_demo.pipeline "${@:2}"
    ;;
test)
    build build
    (cd build && ctest --output-on-failure -j "$jobs")
    echo "== the same suite under AddressSanitizer + UndefinedBehaviorSanitizer"
    build build-asan -DRLHF_SANITIZE=ON
    (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j "$jobs")
    echo "== the same suite under valgrind (errors and definite leaks fail)"
    (cd build && ctest --output-on-failure -j "$jobs" --overwrite MemoryCheckCommand=/usr/bin/valgrind \
        --overwrite "MemoryCheckCommandOptions=--error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite" \
        -T memcheck)
    ;;
*)
    echo "usage: bash tools/bootstrap.sh run|test|build" >&2
    exit 2
    ;;
esac
