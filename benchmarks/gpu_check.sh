#!/usr/bin/env bash
# GPU check in one go, inside a wall-clock budget (default 540 s = 9 minutes):
#   (a) the trainer benchmark on CUDA at paper-profile size (fp32, then tf32, plus k = 1, 2, 4 seeds),
#   (b) `python -m ddd_support train --profile paper` for mlp3, mlp5, mlp7 with as many epochs as
#       the measured epoch time lets fit,
#   (c) the runs' small artifacts (no checkpoints) packed into $OUT: log.txt, bench.json and at
#       most 6 run archives (join split parts with cat; see benchmarks/pack_runs.py).
# Needs only torch, torchvision, numpy, pandas, matplotlib, tqdm. Run from the repository root.
#
# Data, one of:
#   DDD_DATA_TARBALL  a .tar.gz of the CIFAR-10 image folder (train/<class>/*.jpg, test/...),
#                     unpacked to $WORK; make it with
#                     tar czf .data/cifar10-images.tar.gz -C "$(dirname "$DDD_DATA_ROOT")" "$(basename "$DDD_DATA_ROOT")"
#   DDD_DATA_ROOT     an image folder or torchvision root already on the machine.
#   DDD_CACHE_DIR     where decoded arrays are cached (default $WORK/cache). A cache file made
#                     elsewhere is only found for the same absolute data-root path.
# Other knobs: BUDGET_S (540), OUT (./gpu_check_out), WORK (./gpu_check_work), EPOCHS (auto),
#   CHECKPOINT_EVERY (10: a 27 M-parameter checkpoint costs more than a GPU epoch), PYTHON (python3),
#   BENCH_ARGS (benchmark size), TRAIN_ARGS (extra training flags, e.g. "--set n_train=500").
set -uo pipefail
START=$(date +%s)
BUDGET_S=${BUDGET_S:-540}
OUT=${OUT:-$PWD/gpu_check_out}
WORK=${WORK:-$PWD/gpu_check_work}
PYTHON=${PYTHON:-python3}
CHECKPOINT_EVERY=${CHECKPOINT_EVERY:-10}
mkdir -p "$OUT" "$WORK"
LOG="$OUT/log.txt"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 DDD_CACHE_DIR=${DDD_CACHE_DIR:-$WORK/cache}
left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }
say() { echo "[$(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }

say "gpu_check: budget ${BUDGET_S}s"
$PYTHON -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')" 2>&1 | tee -a "$LOG"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv 2>&1 | tee -a "$LOG"

if [ -n "${DDD_DATA_TARBALL:-}" ]; then
  say "unpacking $DDD_DATA_TARBALL"
  tar xzf "$DDD_DATA_TARBALL" -C "$WORK" || { say "cannot unpack the data tarball"; exit 2; }
  DDD_DATA_ROOT="$WORK/$(tar tzf "$DDD_DATA_TARBALL" | head -1 | cut -d/ -f1)"
fi
export DDD_DATA_ROOT=${DDD_DATA_ROOT:-}
say "decoding CIFAR-10 from ${DDD_DATA_ROOT:-the default torchvision root} (once; cached in $DDD_CACHE_DIR)"
$PYTHON -c "from ddd_support.data import load_cifar10; a = load_cifar10(progress=False); print(a.source, a.x_train.shape, a.x_test.shape)" 2>&1 | tee -a "$LOG" || { say "no data"; exit 2; }

# paper-profile size: all of CIFAR-10 (BENCH_ARGS="--tiny" for a quick CPU try of this script)
BENCH_ARGS=${BENCH_ARGS:---model mlp7 --n-train 50000 --n-test 10000 --epochs 1 --repeats 3}
say "(a) benchmark fp32: $BENCH_ARGS"
timeout $(( $(left) / 3 )) $PYTHON benchmarks/bench_trainer.py $BENCH_ARGS --seeds 1,2,4 \
  --json "$WORK/bench_fp32.json" 2>&1 | tee -a "$LOG"
for p in tf32 bf16; do
  say "(a) benchmark $p (ours only)"
  timeout $(( $(left) / 4 )) $PYTHON benchmarks/bench_trainer.py $BENCH_ARGS --seeds "" \
    --skip conventional,end_to_end --precision $p --json "$WORK/bench_$p.json" 2>&1 | tee -a "$LOG"
done
$PYTHON - "$WORK" "$OUT/bench.json" <<'EOF'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
merged = {p.stem.split("_")[1]: json.loads(p.read_text()) for p in sorted(work.glob("bench_*.json"))}
Path(sys.argv[2]).write_text(json.dumps(merged, indent=2) + "\n")
EOF

# (b) epochs from the measured instrumented epoch time of mlp7 (mlp3 + mlp5 add about 30%)
TRAIN_S=$(( $(left) - 60 ))
EPOCHS=${EPOCHS:-$($PYTHON - "$WORK/bench_fp32.json" "$TRAIN_S" "$CHECKPOINT_EVERY" <<'EOF'
import json, sys
try:
    v = json.load(open(sys.argv[1]))["variants"]["instrumented"]
    b = v["breakdown"]
    per_epoch = b["train"] + b["eval"] + b["metrics_io"] + b["snapshot"] * 4 + v["checkpoint_seconds_each"] / float(sys.argv[3])
except Exception:
    per_epoch = 5.0
print(max(1, min(300, int(float(sys.argv[2]) / (1.35 * per_epoch)))))
EOF
)}
say "(b) training mlp3, mlp5, mlp7 of the paper profile for $EPOCHS epochs (${TRAIN_S}s allowed)"
# each model gets its own time limit (a share of what is left), so a slow one cannot starve mlp7
for spec in mlp3:10 mlp5:28 mlp7:100; do
  model=${spec%%:*}; share=$(( ($(left) - 60) * ${spec##*:} / 100 ))
  [ "$share" -gt 10 ] || { say "no time left for $model"; continue; }
  say "$model: up to ${share}s"
  timeout --signal=INT "$share" $PYTHON -m ddd_support train --profile paper --model "$model" \
    --set epochs="$EPOCHS" --set checkpoint_every="$CHECKPOINT_EVERY" ${TRAIN_ARGS:-} --out "$WORK/runs" --quiet 2>&1 \
    | grep -v "^Traceback\|^KeyboardInterrupt\|^  " | tee -a "$LOG"
  say "$model: exit status ${PIPESTATUS[0]} (124: stopped by its time limit; the epochs done are kept)"
done
for f in "$WORK"/runs/paper/*/seed*/metrics.csv; do
  [ -f "$f" ] && say "$f: $(( $(wc -l < "$f") - 2 )) epochs; last row: $(tail -1 "$f" | cut -c1-160)"
done

say "(c) packing artifacts"
$PYTHON benchmarks/pack_runs.py "$WORK/runs" "$OUT" --max-files 6 --max-mib 56 2>&1 | tee -a "$LOG"
say "done; files in $OUT:"
ls -la "$OUT" | tee -a "$LOG"
