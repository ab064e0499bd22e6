#!/bin/bash
# One prepared GPU check (a lent CUDA machine; nothing in tests or CI needs one). Writes to $OUT (default runs/gpu-check).
#   bash benchmarks/gpu_check.sh [FASHION_MNIST_DIR]
# 1. benchmarks/gpu_throughput.py: training step and inference at 224 px, fp32/bf16, effzoo vs timm;
# 2. the README's main job (`effzoo train --phi 0`, digits) on one GPU, reloaded and compared with CPU;
# 3. benchmarks/gpu_agreement.py (shipped checkpoints: GPU vs CPU logits) and `effzoo evaluate --device cuda`;
# 4. the Fashion-MNIST recipe on one GPU (if the IDX files are given), time-boxed;
# 5. the torch.compile'd bf16 training step (time-boxed: compiling can take minutes).
# At most 8 files come back from a lent machine: keep $OUT to logs, JSON and the CSV. Each stage has its own time limit, so one failure or overrun does not lose the others' results.
OUT=${OUT:-runs/gpu-check}; mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
FMNIST=${1:-}
stage() { local name=$1 limit=$2; shift 2; echo "=== $name (limit ${limit}s) $(date +%T)"; local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; local rc=$?; tail -n 40 "$OUT/$name.log"
  echo "=== $name rc=$rc in $((SECONDS - t0)) s"; }
nvidia-smi -L; $PY -c "import torch, timm, pytorch_lightning as pl; print('torch', torch.__version__, 'timm', timm.__version__, 'lightning', pl.__version__)"
stage throughput 150 $PY benchmarks/gpu_throughput.py --json "$OUT/throughput.json"
stage digits 90 bash -c "$PY -m effzoo train --phi 0 --accelerator gpu --devices 1 --no-progress-bar --output /tmp/gpu-digits && \
  $PY - <<'PYEOF'
import torch, effzoo
gpu = effzoo.load_checkpoint('/tmp/gpu-digits').cuda().eval()
cpu = effzoo.load_checkpoint('/tmp/gpu-digits').eval()
x = torch.randn(16, *gpu.pretrained_cfg['input_size'], generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    a, b = gpu(x.cuda()).cpu(), cpu(x)
# noise input: logits far larger than on real images, so read the difference relative to their scale (TF32 ~1e-3)
print('reloaded on GPU vs CPU: max |diff| %.2e of the logit scale %.1f, same argmax %s'
      % ((a - b).abs().max() / b.abs().max(), b.abs().max(), bool((a.argmax(1) == b.argmax(1)).all())))
PYEOF"
stage agreement 150 bash -c "$PY benchmarks/gpu_agreement.py ${FMNIST:+--data-dir $FMNIST} --json $OUT/agreement.json && \
  $PY -m effzoo evaluate --checkpoint checkpoints/effzoo_efficientnet_phi-4_digits --data digits --device cuda \
    --output /tmp/eval-digits"
if [ -n "$FMNIST" ]; then
  stage fashion_mnist 210 $PY -m effzoo train --config configs/fashion_mnist.yaml --data-dir "$FMNIST" --accelerator gpu \
    --devices 1 --no-progress-bar --output /tmp/gpu-fmnist
  cp /tmp/gpu-fmnist/model.json "$OUT/fmnist_model.json" 2>/dev/null
  cp /tmp/gpu-fmnist/logs/version_0/metrics.csv "$OUT/fmnist_metrics.csv" 2>/dev/null
fi
stage compile 100 $PY benchmarks/gpu_throughput.py --parts compile --iters 5 --repeats 2 --json "$OUT/throughput_compile.json"
