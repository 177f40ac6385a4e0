#!/usr/bin/env bash
# The GPU benchmark on a GPU machine whose Python already has PyTorch with CUDA but not
# the project's other dependencies (no network there): wheels in .whl/ are installed
# beside it, the CIFAR-10 JPEG tarball is read from $CIFAR_ARCHIVE, and the result is
# copied to $RESULT_DIR. The wheels are the project's dependencies for that Python
# (`pip download --no-deps --python-version 3.12 ...`) minus what the machine has.
#
#   CIFAR_ARCHIVE=.gpudata/cifar10-train-jpg.tar.gz RESULT_DIR=/tmp/out \
#       bash benchmarks/gpu_machine.sh --seeds 0 1 2 --screen-epochs 18
set -uo pipefail
cd "$(dirname "$0")/.."
RESULT_DIR=${RESULT_DIR:-${OUT:-benchmarks/results}}
mkdir -p "$RESULT_DIR"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export DO_NOT_TRACK=1 KEDRO_DISABLE_TELEMETRY=true MLFLOW_DISABLE_TELEMETRY=true MPLBACKEND=Agg
python3 -c "import torch, kedro, mlflow, model_lifecycle.pipelines.finetune.nodes; \
print('torch', torch.__version__, torch.cuda.get_device_name(), 'kedro', kedro.__version__, \
'mlflow', mlflow.__version__)" || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
timeout "${BENCH_TIMEOUT:-540}" python3 -m benchmarks.cifar10_gpu \
    --archive "${CIFAR_ARCHIVE:-../shared/datasets/cifar10-train-jpg.tar.gz}" "$@" \
    2>&1 | tee "$RESULT_DIR/cifar10_gpu.log" | grep -v -E "^\s*$|INFO .*(Loading data|Saving data|Completed [0-9]+ out)"
status=${PIPESTATUS[0]}
cp benchmarks/results/cifar10_gpu.json "$RESULT_DIR/" 2>/dev/null
exit "$status"
