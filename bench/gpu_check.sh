#!/usr/bin/env bash
# One command for a machine with a GPU: fastrelu's CUDA tests, the GPU benchmark group, CPU
# thread scaling and a summary, all written into OUTDIR. fastrelu is imported from this
# checkout (PYTHONPATH), nothing is installed.
#
#   bash bench/gpu_check.sh OUTDIR [--cpu-only] [--smoke]
#
#   --cpu-only  skip the GPU steps; without a usable GPU they are skipped anyway
#   --smoke     small sizes, for a quick check: the GPU group at 2**12 and 2**16 elements, the
#               thread scaling at 2**16 elements on 1 and 2 threads
#
# Environment: PYTHON, the interpreter (default python3); FASTRELU_BENCH_SIZES, the GPU group's
# sizes as exponents of 2 (default 12,14,...,28); FASTRELU_CHECK_SIZE, the thread scaling's
# exponent (default 26); FASTRELU_CHECK_THREADS (default 1,2,4,8,16); FASTRELU_BENCH_BUDGET, the
# seconds after which the GPU group starts no more benchmarks (default 140).
#
# Steps, in this order, each under a time limit (seconds, below), on a GPU:
#   1. versions and the GPU (python -m fastrelu info)
#   2. python -m pytest tests/cuda -x -q                  -> tests-cuda.txt
#   3. bench/test_gpu.py under pytest-benchmark            -> bench-gpu.txt, bench-gpu.json
#   4. CPU thread scaling (bench/gpu_check.py threads)     -> threads.json
#   5. the GPU tables and plot (bench/gpu_check.py report) -> gpu-ratios.png
# and without one, steps 1 and 4 only. Everything printed also goes to summary.txt: at most
# these 6 files. A step that fails or runs out of time does not stop the later ones; the exit
# status is then 1, as it is if OUTDIR ends up with more than 8 files. It is 0 when every step
# that ran succeeded (a machine without a GPU included), and 2 for a wrong command line.
set -u

# At most 7.8 minutes in all, with finding the GPU (30 s) and nvidia-smi (10 s); about half of
# that expected on an H200.
LIMIT_INFO=30
LIMIT_TESTS=120
LIMIT_BENCH=170
LIMIT_THREADS=75
LIMIT_REPORT=30
FILE_LIMIT=8

usage() {
    echo "usage: bash bench/gpu_check.sh OUTDIR [--cpu-only] [--smoke]"
}

outdir="" cpu_only=0 smoke=0
for arg in "$@"; do
    case "$arg" in
        --cpu-only) cpu_only=1 ;;
        --smoke) smoke=1 ;;
        -h | --help) usage; exit 0 ;;
        -*) usage >&2; exit 2 ;;
        *)
            if [ -n "$outdir" ]; then usage >&2; exit 2; fi
            outdir=$arg
            ;;
    esac
done
if [ -z "$outdir" ]; then usage >&2; exit 2; fi
mkdir -p "$outdir" && outdir=$(cd "$outdir" && pwd) || exit 2

cd "$(dirname "$0")/.." || exit 2
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ "$smoke" = 1 ]; then
    export FASTRELU_BENCH_SIZES=${FASTRELU_BENCH_SIZES:-12,16}
    export FASTRELU_CHECK_SIZE=${FASTRELU_CHECK_SIZE:-16}
    export FASTRELU_CHECK_THREADS=${FASTRELU_CHECK_THREADS:-1,2}
fi
# The benchmark group skips what would start later than this, so that it ends within its
# limit and still writes its JSON.
export FASTRELU_BENCH_BUDGET=${FASTRELU_BENCH_BUDGET:-$((LIMIT_BENCH - 40))}

exec 3>&1 4>&2
exec > >(tee "$outdir/summary.txt") 2>&1
tee_pid=$!

failed=()
started=$SECONDS

# run_step NAME LIMIT LOG COMMAND...: run COMMAND under LIMIT seconds; its output goes to LOG
# (then its last lines to the summary) or, with LOG empty, straight to the summary.
run_step() {
    local name=$1 limit=$2 log=$3 start=$SECONDS rc
    shift 3
    echo
    echo "== $name (limit ${limit} s)"
    if [ -n "$log" ]; then
        timeout -k 10 "$limit" "$@" >"$outdir/$log" 2>&1
        rc=$?
        tail -n 12 "$outdir/$log"
    else
        timeout -k 10 "$limit" "$@"
        rc=$?
    fi
    local took=$((SECONDS - start))
    if [ "$rc" = 0 ]; then
        echo "-- $name: ok, ${took} s"
    elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        echo "-- $name: TIMED OUT after ${took} s"
        failed+=("$name")
    else
        echo "-- $name: FAILED (exit status $rc) after ${took} s"
        failed+=("$name")
    fi
}

echo "fastrelu GPU check: $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -n), $("$PYTHON" --version 2>&1)"
gpu=$(timeout 30 "$PYTHON" bench/gpu_check.py detect 2>&1)
detected=$?
echo "$gpu"
if [ "$detected" != 0 ] && [ "$detected" != 3 ]; then
    echo "-- finding the GPU: FAILED (exit status $detected)"
    failed+=("finding the GPU")
fi
if [ "$detected" = 0 ] && [ "$cpu_only" = 1 ]; then
    echo "--cpu-only: the GPU steps are skipped"
fi
on_gpu=0
if [ "$detected" = 0 ] && [ "$cpu_only" = 0 ]; then on_gpu=1; fi
if [ "$on_gpu" = 0 ] && [ "$detected" != 0 ]; then
    echo "No GPU: only the CPU thread scaling runs."
fi

run_step "versions" "$LIMIT_INFO" "" "$PYTHON" -m fastrelu info
if [ "$on_gpu" = 1 ]; then
    command -v nvidia-smi >/dev/null && timeout 10 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv
    run_step "CUDA tests" "$LIMIT_TESTS" tests-cuda.txt \
        "$PYTHON" -m pytest tests/cuda -x -q -p no:cacheprovider
    run_step "GPU benchmark group" "$LIMIT_BENCH" bench-gpu.txt \
        "$PYTHON" -m pytest bench/test_gpu.py -q -p no:cacheprovider \
        --benchmark-enable --benchmark-min-rounds=5 --benchmark-columns=median,rounds \
        --benchmark-json="$outdir/bench-gpu.json"
fi
run_step "CPU thread scaling" "$LIMIT_THREADS" "" "$PYTHON" bench/gpu_check.py threads "$outdir/threads.json"
if [ "$on_gpu" = 1 ]; then
    run_step "GPU tables" "$LIMIT_REPORT" "" \
        "$PYTHON" bench/gpu_check.py report "$outdir/bench-gpu.json" --plot "$outdir/gpu-ratios.png"
fi
"$PYTHON" bench/gpu_check.py budget "$outdir" --limit "$FILE_LIMIT" || failed+=("file budget")

echo
if [ ${#failed[@]} = 0 ]; then
    echo "All steps succeeded in $((SECONDS - started)) s; files in $outdir"
    status=0
else
    list=$(printf '%s, ' "${failed[@]}")
    echo "Failed: ${list%, }; $((SECONDS - started)) s; files in $outdir"
    status=1
fi
exec 1>&3 2>&4 3>&- 4>&-
wait "$tee_pid" 2>/dev/null
exit "$status"
