#!/usr/bin/env bash
# One prepared GPU verification run (docs/gpu.md). Usage:
#   bash benchmarks/gpu_check.sh OUT_DIR [--dry-run] [extra gpu_check.py options]
# On the lent GPU machine (no internet) the wheels in .whl/ (made here by benchmarks/gpu_wheels.sh,
# carried with the device tool's `carry: [".whl"]`) and this checkout are installed into /tmp/site
# first; gsplat then JIT-compiles its CUDA extension on first use (timed separately in the report).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: gpu_check.sh OUT_DIR [--dry-run]}
shift
case " $* " in
  *" --dry-run "*) ;;  # CI / a CPU machine: the installed package is used as it is
  *)
    if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
      t0=$(date +%s)
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
      python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site . || exit 3
      export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
      echo "[gpu_check] wheels + avatarbench installed into /tmp/site in $(( $(date +%s) - t0 )) s"
    fi
    export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-/tmp/torch_extensions}
    export MAX_JOBS=${MAX_JOBS:-16}
    ;;
esac
export WANDB_MODE=disabled PYTHONUNBUFFERED=1
export AVATARBENCH_HOME=${AVATARBENCH_HOME:-$out/home}
mkdir -p "$out"
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
"${PYTHON:-python3}" benchmarks/gpu_check.py "$out" "$@" 2>&1 | tee "$out/gpu_check.log"
exit "${PIPESTATUS[0]}"
