#!/usr/bin/env bash
# The GPU checks in one run: the CUDA tests, then every benchmark on the GPU in float32, float16 and
# bfloat16. Figures go to OUTDIR/results.jsonl, the tables to OUTDIR/report.md, logs beside them.
#
#   bash benchmarks/gpu_check.sh OUTDIR            # on a machine with a CUDA GPU, from the repo root
#   DEVICE=cpu QUICK=1 bash benchmarks/gpu_check.sh OUTDIR   # the same steps on the tiny net, on CPU
#
# Python packages the machine lacks (blipviz needs transformers >= 5.20) can come as wheels in .whl/;
# they are installed into a scratch folder first. Exits non-zero if any step failed; later steps
# still run, so one failure does not hide the rest.
set -uo pipefail

out=${1:?usage: gpu_check.sh OUTDIR}
mkdir -p "$out"
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
quick=()
[ -n "${QUICK:-}" ] && quick=(--quick)
status=0

if compgen -G ".whl/*.whl" >/dev/null; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/blipviz-site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/blipviz-site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1

step() {  # step NAME COMMAND...: run, log to OUTDIR/NAME.log, remember a failure
    local name=$1
    shift
    echo "== $name: $*"
    "$@" 2>&1 | tee "$out/$name.log"
    local rc=${PIPESTATUS[0]}
    [ "$rc" = 0 ] || { echo "== $name failed ($rc)"; status=1; }
}

step versions "$py" -c "
import torch, transformers, blipviz
print('torch', torch.__version__, 'transformers', transformers.__version__, 'blipviz', blipviz.__version__)
print('cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')
assert '$device' == 'cpu' or torch.cuda.is_available(), 'no CUDA GPU'
"
[ "$status" = 0 ] || exit 1

# The tests that need a GPU (they skip on CPU), with the half-precision ones beside them.
step tests "$py" -m pytest -q -o addopts="" -p no:cacheprovider tests/test_models.py -k "cuda or half"

results=(--results "$out/results.jsonl" --device "$device" "${quick[@]}")
dtypes=(float32 float16 bfloat16)
[ "$device" = cpu ] && dtypes=(float32)  # float16 matmuls have no fast CPU kernels
for dtype in "${dtypes[@]}"; do
    # 6 repetitions: with fewer, half-precision medians still hold first-call costs of each batch shape
    step "vision_$dtype" "$py" benchmarks/bench_vision.py "${results[@]}" --dtype "$dtype" --reps 6
    step "itm_matrix_$dtype" "$py" benchmarks/bench_itm_matrix.py "${results[@]}" --dtype "$dtype"
done
step precision "$py" benchmarks/bench_precision.py "${results[@]}" --reps 2
step cache "$py" benchmarks/bench_cache.py "${results[@]}"
step memory "$py" benchmarks/bench_memory.py "${results[@]}"
# Pair scoring: pair_scores against the per-pair recipe (16 images fill a GPU batch), score_pairs
# against pair_scores on 1,000 camera-sized files with the full net; its memory part is CPU-only.
pairs=(--skip memory)
[ "$device" = cpu ] || pairs+=(--n-images 16 --collection-net full)
step pairs "$py" benchmarks/bench_pairs.py "${results[@]}" "${pairs[@]}"
"$py" benchmarks/report.py --results "$out/results.jsonl" ${QUICK:+--include-quick} >"$out/report.md"
exit "$status"
