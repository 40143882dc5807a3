#!/usr/bin/env bash
# The GPU proof (issue 21): run it as it is on a machine with a GPU.
#
#   ci/gpu-check.sh [WHEEL_DIR]
#
# 1. installs what is missing for the tests (array-api-compat, -extra, -strict,
#    pytest, hypothesis, scipy, scikit-learn ...): from WHEEL_DIR when given
#    (pip --no-index), else from PyPI; torch, JAX and CuPy are used as found;
# 2. runs the GPU cells of the test matrix (torch-cuda, jax-gpu, cupy);
# 3. runs `mlequations check` on the GPU backends;
# 4. runs `mlequations bench --quick` on each GPU backend beside its CPU twin
#    (portable/native ratios, GPU-over-CPU speedups) and `mlequations tune
#    --quick --dry-run` on the GPU (the tuned plan against the accelerator rule).
#
# Without a GPU it still runs end to end on the CPU, says why each GPU part is
# skipped, and exits 0. Logs and the bench JSON go to $OUT (default /tmp/mlequations-gpu-check).
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS="${1:-${WHEELS:-}}"
OUT="${OUT:-${TMPDIR:-/tmp}/mlequations-gpu-check}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"  # no build step: the source tree itself
status=0
step() { printf '\n== %s\n' "$*"; }

step "1/4 install what is missing"
need=()
for spec in array-api-compat:array_api_compat array-api-extra:array_api_extra \
  array-api-strict:array_api_strict pytest:pytest pytest-xdist:xdist hypothesis:hypothesis \
  scipy:scipy scikit-learn:sklearn jsonschema:jsonschema numpy:numpy; do
  "$PY" -c "import ${spec#*:}" 2>/dev/null || need+=("${spec%%:*}")
done
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  if [[ -n "$WHEELS" ]]; then
    "$PY" -m pip install -q --no-index --find-links "$WHEELS" "${need[@]}" || status=1
  else
    "$PY" -m pip install -q "${need[@]}" || status=1
  fi
else
  echo "nothing missing"
fi
"$PY" -m mlequations info | tee "$OUT/info.txt"

# Which GPU backends can run here, each with the reason when it cannot.
mapfile -t gpu < <("$PY" - <<'EOF'
from mlequations._backends import BACKENDS
for b in BACKENDS:
    if b.gpu:
        reason = b.skip_reason()
        print(b.id if reason is None else f"-{b.id}: {reason}")
EOF
)
ids=()
for line in "${gpu[@]}"; do
  if [[ $line == -* ]]; then echo "skipping ${line#-}"; else ids+=("$line"); fi
done
declare -A twin=([torch-cuda]=torch-cpu [jax-gpu]=jax-jit [cupy]=numpy)

step "2/4 the GPU cells of the test matrix"
if ((${#ids[@]})); then
  k=$(printf ' or %s' "${ids[@]}")
  xdist=$("$PY" -c "import xdist" 2>/dev/null && echo "-n 2")
  "$PY" -m pytest backends_tests -q -p no:cacheprovider $xdist -k "${k# or }" \
    --continue-on-collection-errors 2>&1 | tee "$OUT/pytest-gpu.txt" | tail -15
  ((PIPESTATUS[0] == 0)) || status=1
else
  echo "skipped: no GPU backend can run here (reasons above); the CPU cells run in CI"
fi

step "3/4 mlequations check"
if ((${#ids[@]})); then
  "$PY" -m mlequations check $(printf -- '--backend %s ' "${ids[@]}") | tee "$OUT/check.txt" || status=1
else
  echo "skipped on the GPU: no GPU. On the CPU, NumPy and torch in float32 as a smoke test:"
  "$PY" -m mlequations check --backend numpy --backend torch-cpu --dtype float32 \
    --jobs 1 | tail -5 || status=1
fi

step "4/4 mlequations bench --quick (and tune --quick --dry-run)"
bench=()
for id in "${ids[@]}"; do bench+=(--backend "$id" --backend "${twin[$id]}"); done
if ((${#ids[@]} == 0)); then
  echo "no GPU: the CPU backends only, so no GPU-over-CPU column"
  bench=(--backend numpy --backend torch-cpu)
fi
"$PY" -m mlequations bench --quick --no-progress --op attention --op conv2d "${bench[@]}" \
  --json "$OUT/bench.json" | tee "$OUT/bench.txt" || status=1
if ((${#ids[@]})); then
  "$PY" -m mlequations tune --quick --dry-run --no-progress $(printf -- '--backend %s ' "${ids[@]}") \
    | tee "$OUT/tune.txt" || status=1
else
  echo "tune on the GPU: skipped, no GPU"
fi
step "done: exit $status; logs in $OUT/"
exit $status
