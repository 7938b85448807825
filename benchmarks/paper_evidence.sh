#!/usr/bin/env bash
# Paper-scale evidence on one GPU, inside a wall-clock budget (BUDGET_S, default 540 s), in order:
#   (a) the paper profile, seeds 0, 1, 2, 300 epochs: mlp7, mlp5, mlp3, each model's seeds stacked
#       in one CUDA graph (`train --batched-seeds`);
#   (b) mlp7 and mlp5 to 1,000 epochs for seeds 0 and 1: a's complete runs are copied and continued
#       (a constant learning rate makes that the same as one 1,000-epoch run);
#   (c) the paper_cosine profile (lr decayed from 1e-4 to 0 over the run) for mlp7;
#   (d) mlp7 at noise rates 0.0, 0.1, 0.2, 0.4, seed 0 (0.3 is a's), the four stacked in one graph
#       (`python -m ddd_support.train.batch --vary noise_rate=...`);
# then, whatever got done, `export-reference` of each group (compact copies, ablation computed
# here from the checkpoints) packed into $OUT/reference.tar.gz (or .partNN files of 15 MiB: join
# with `cat reference.tar.gz.part* | tar xzf -`), with $OUT/log.txt and $OUT/status.json.
#
# Resumable: the same command run again continues every unfinished run from its last checkpoint
# and skips finished ones, so two back-to-back commands get twice the budget. The runs live in
# WORK, which must still be there for the second command (on a lent machine: start it at once).
# Each training command is stopped with SIGINT at the budget less RESERVE_S (kept for export
# and packing); the epochs up to its last checkpoint stay.
#
# Needs only torch, torchvision, numpy, pandas, matplotlib, tqdm. Run from the repository root.
# Data: DDD_DATA_TARBALL (a .tar.gz of the CIFAR-10 image folder, unpacked into WORK) or
# DDD_DATA_ROOT (as for training); decoded arrays are cached in DDD_CACHE_DIR (default WORK/cache).
#
# Knobs: BUDGET_S (540), RESERVE_S (90), OUT (./gpu_check_out/paper_evidence), WORK (./gpu_check_work/evidence),
#   PYTHON (python3), CHECKPOINT_EVERY (10), SEEDS ("0 1 2"), LONG_SEEDS ("0 1"), LONG_EPOCHS (1000),
#   COSINE_SEEDS ("0"), NOISE_RATES ("0.0 0.1 0.2 0.4"), NOISE_SEED (0), EPOCHS (the profile's 300),
#   ITEMS ("a b c d"), ABLATION (1; 0 exports without it), TRAIN_SETS (extra --set flags for every
#   run), TINY (1: tiny CPU-sized runs, for a dry run of the mechanics).
#
# CPU dry run of the whole script (tiny runs, a few minutes on two cores):
#   TINY=1 DDD_DATA_ROOT=path/to/cifar10-images BUDGET_S=600 OUT=/tmp/pe_out WORK=/tmp/pe_work \
#     bash benchmarks/paper_evidence.sh
# and the same command again: it finds everything done and only exports and packs.
set -uo pipefail
START=$(date +%s)
BUDGET_S=${BUDGET_S:-540}
RESERVE_S=${RESERVE_S:-90}
OUT=${OUT:-$PWD/gpu_check_out/paper_evidence}
WORK=${WORK:-$PWD/gpu_check_work/evidence}
PYTHON=${PYTHON:-python3}
CHECKPOINT_EVERY=${CHECKPOINT_EVERY:-10}
SEEDS=${SEEDS:-0 1 2}
LONG_SEEDS=${LONG_SEEDS:-0 1}
LONG_EPOCHS=${LONG_EPOCHS:-1000}
COSINE_SEEDS=${COSINE_SEEDS:-0}
NOISE_RATES=${NOISE_RATES:-0.0 0.1 0.2 0.4}
NOISE_SEED=${NOISE_SEED:-0}
EPOCHS=${EPOCHS:-}
ITEMS=${ITEMS:-a b c d}
ABLATION=${ABLATION:-1}
TRAIN_SETS=${TRAIN_SETS:-}
if [ "${TINY:-0}" = 1 ]; then
  TRAIN_SETS="--set n_train=600 --set n_test=200 --set base_width=16 --set probe_per_class=4 --set device=cpu --set eval_batch_size=512 $TRAIN_SETS"
  EPOCHS=${EPOCHS:-4}; LONG_EPOCHS=6; CHECKPOINT_EVERY=2; RESERVE_S=${RESERVE_S_TINY:-60}
fi
mkdir -p "$OUT" "$WORK"
LOG="$OUT/log.txt"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 DDD_CACHE_DIR=${DDD_CACHE_DIR:-$WORK/cache}
RUNS="$WORK/runs"     # a and c (profiles paper and paper_cosine)
LONG="$WORK/long"     # b
NOISE="$WORK/noise"   # d: one root per noise rate
REF="$WORK/reference"
EPOCH_SET=${EPOCHS:+--set epochs=$EPOCHS}
COMMON="--set checkpoint_every=$CHECKPOINT_EVERY $TRAIN_SETS --quiet"
left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }
say() { echo "[$(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }
wanted() { case " $ITEMS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# run NAME COMMAND...: within the time left less RESERVE_S; stopped with SIGINT (then KILL 60 s later)
run() {
  local name=$1; shift
  local limit=$(( $(left) - RESERVE_S ))
  if [ "$limit" -lt 20 ]; then say "($name) not started: no time left (resume with the same command)"; return 0; fi
  say "($name) up to ${limit}s: $*"
  timeout --signal=INT --kill-after=60 "$limit" "$@" >> "$WORK/train_$name.log" 2>&1
  local rc=$?
  case $rc in
    0) say "($name) done" ;;
    124|130) say "($name) stopped at the time limit; the same command resumes it" ;;
    *) say "($name) FAILED with status $rc; last lines of its log:"; tail -5 "$WORK/train_$name.log" | tee -a "$LOG" ;;
  esac
}

say "paper_evidence: budget ${BUDGET_S}s, items: $ITEMS, work in $WORK"
$PYTHON -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')" 2>&1 | tee -a "$LOG"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv 2>&1 | tee -a "$LOG"

if [ -n "${DDD_DATA_TARBALL:-}" ]; then
  DATA_DIR="$WORK/$(tar tzf "$DDD_DATA_TARBALL" | head -1 | cut -d/ -f1)"
  if [ ! -d "$DATA_DIR" ]; then
    say "unpacking $DDD_DATA_TARBALL"
    tar xzf "$DDD_DATA_TARBALL" -C "$WORK" || { say "cannot unpack the data tarball"; exit 2; }
  fi
  DDD_DATA_ROOT=$DATA_DIR
fi
export DDD_DATA_ROOT=${DDD_DATA_ROOT:-}
say "CIFAR-10 from ${DDD_DATA_ROOT:-the default torchvision root} (decoded once; cached in $DDD_CACHE_DIR)"
$PYTHON -c "from ddd_support.data.cifar import load_cifar10; a = load_cifar10(progress=False); print(a.source, a.x_train.shape, a.x_test.shape)" 2>&1 | tee -a "$LOG" || { say "no data"; exit 2; }

seed_flags() { for s in $1; do printf -- "--seed %s " "$s"; done; }

if wanted a; then
  run a $PYTHON -m ddd_support train --profile paper --model mlp7 --model mlp5 --model mlp3 $(seed_flags "$SEEDS") \
    --batched-seeds $EPOCH_SET $COMMON --out "$RUNS"
fi

if wanted b; then
  # a's complete runs of mlp7, mlp5 and the long seeds, copied once, are where b starts
  for model in mlp7 mlp5; do
    for seed in $LONG_SEEDS; do
      src="$RUNS/paper/$model/seed$seed"; dst="$LONG/paper/$model/seed$seed"
      if [ ! -e "$dst" ] && [ -f "$src/config.json" ] && \
         $PYTHON -c "import json, sys; s = json.load(open(sys.argv[1])); sys.exit(s.get('status') != 'complete')" "$src/config.json"; then
        mkdir -p "$(dirname "$dst")" && cp -a "$src" "$dst" && say "(b) continues a's $model seed $seed"
      fi
    done
  done
  run b $PYTHON -m ddd_support train --profile paper --model mlp7 --model mlp5 $(seed_flags "$LONG_SEEDS") \
    --batched-seeds --set epochs="$LONG_EPOCHS" $COMMON --out "$LONG"
fi

if wanted c; then
  run c $PYTHON -m ddd_support train --profile paper_cosine --model mlp7 $(seed_flags "$COSINE_SEEDS") \
    --batched-seeds $EPOCH_SET $COMMON --out "$RUNS"
fi

if wanted d; then
  run d $PYTHON -m ddd_support.train.batch --profile paper --model mlp7 --seed "$NOISE_SEED" \
    --vary noise_rate="$(echo $NOISE_RATES | tr ' ' ',')" $EPOCH_SET $COMMON --out "$NOISE"
fi

say "status of every run:"
$PYTHON - "$WORK" "$OUT/status.json" <<'EOF' 2>&1 | tee -a "$LOG"
import json, sys
from pathlib import Path
work, rows = Path(sys.argv[1]), []
for cfg in sorted(work.glob("**/seed*/config.json")):
    if "reference" in cfg.relative_to(work).parts:
        continue
    state = json.loads(cfg.read_text())
    metrics = cfg.parent / "metrics.csv"
    lines = metrics.read_text().splitlines() if metrics.exists() else []
    header, last = (lines[0].split(","), lines[-1].split(",")) if len(lines) > 1 else ([], [])
    row = dict(zip(header, last))
    prov = state.get("provenance", {})
    rows.append({"run": str(cfg.parent.relative_to(work)), "status": state.get("status"),
                 "epochs": state["config"]["epochs"], "epochs_done": int(row["epoch"]) if row else 0,
                 "test_acc": float(row["test_acc"]) if row else None,
                 "train_seconds_total": prov.get("train_seconds_total"), "device": prov.get("device_name")})
    r = rows[-1]
    print(f"  {r['run']}: {r['status']}, {r['epochs_done']}/{r['epochs']} epochs, test_acc {r['test_acc']}")
Path(sys.argv[2]).write_text(json.dumps(rows, indent=2) + "\n")
EOF

say "exporting compact copies into $REF"
rm -rf "$REF"
EXPORT_FLAGS=""
[ "$ABLATION" = 1 ] || EXPORT_FLAGS="--no-ablation"
export_group() {  # DEST RUN_DIR...: runs without metrics are left out
  local dest=$1; shift
  local dirs=()
  for d in "$@"; do [ -f "$d/metrics.csv" ] && dirs+=("$d"); done
  [ ${#dirs[@]} -gt 0 ] || return 0
  $PYTHON -m ddd_support export-reference "${dirs[@]}" --dest "$dest" $EXPORT_FLAGS --quiet >> "$WORK/export.log" 2>&1 \
    && say "exported ${#dirs[@]} run(s) into ${dest#$WORK/}" \
    || { say "export into ${dest#$WORK/} FAILED:"; tail -5 "$WORK/export.log" | tee -a "$LOG"; }
}
export_group "$REF/paper" "$RUNS"/paper/*/seed* "$RUNS"/paper_cosine/*/seed*
export_group "$REF/long" "$LONG"/paper/*/seed*
for root in "$NOISE"/*/; do
  [ -d "$root" ] && export_group "$REF/noise/$(basename "$root")" "$root"paper/*/seed*
done

if [ -d "$REF" ]; then
  rm -f "$OUT"/reference.tar.gz "$OUT"/reference.tar.gz.part*
  tar czf "$OUT/reference.tar.gz" -C "$REF" .
  size=$(stat -c %s "$OUT/reference.tar.gz")
  if [ "$size" -gt $(( 15 * 1024 * 1024 )) ]; then
    split -b 15M -d -a 2 "$OUT/reference.tar.gz" "$OUT/reference.tar.gz.part" && rm "$OUT/reference.tar.gz"
    say "reference: $(( size / 1024 / 1024 )) MiB in $(ls "$OUT"/reference.tar.gz.part* | wc -l) parts"
  else
    say "reference: $(( size / 1024 )) KiB in reference.tar.gz"
  fi
fi
say "done; files in $OUT:"
ls -la "$OUT" | tee -a "$LOG"
