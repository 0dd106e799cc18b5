#!/usr/bin/env bash
# The GPU checks, in one call, for a session lent a CUDA machine (CI and the development machines have none):
#   benchmarks/gpu_check.sh ISBI_FOLDER LOG_FOLDER [BUDGET]
# 1. the GPU tests (tests/test_gpu.py: --device cuda with AMP, fp16 loss scaling, resume on the CPU, diffusion);
# 2. benchmarks/speed.py --device cuda: the seed loop and the engine on the GPU;
# 3. benchmarks/variants.py: the planned default trained on ISBI 0-24 for BUDGET (default 3m) on the GPU,
#    scored on 25-29, with and without --tta.
# Each step goes on when one before it fails; the logs and RESULTS.md (with the benchmarks' new sections) are
# copied to LOG_FOLDER. PYTHON (default python3) must have the dependencies; src/ is put on the path, so the
# package need not be installed there.
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?give the ISBI 2012 folder}
LOGS=${2:?give a folder for the logs}
BUDGET=${3:-3m}
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$LOGS"
status=0
nvidia-smi -L
"$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name())" || exit 1
"$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py 2>&1 | tee "$LOGS/gpu_tests.log" || status=1
"$PY" benchmarks/speed.py --device cuda 2>&1 | tee "$LOGS/speed.log" || status=1
"$PY" benchmarks/variants.py --data "$DATA" --budget "$BUDGET" --tta 2>&1 | tee "$LOGS/variants.log" || status=1
cp benchmarks/RESULTS.md "$LOGS/RESULTS.md"
exit $status
