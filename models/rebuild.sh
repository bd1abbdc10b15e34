#!/usr/bin/env bash
# Rebuild the recipe's model end to end, in the background-friendly order the recipe needs:
# ImageNet weights → features + training → split links → int8 conversion → test figures → Markdown card.
# The shipped model then had its whole trunk tuned on a machine with an accelerator (models.tune_trunk --pack /
# --delta there, --apply here, then conversion and figures again): models/README.md, "Rebuild", lists the steps.
#   models/rebuild.sh [WORK_DIR]        (default ~/.cache/smartbin; logs to WORK_DIR/rebuild.log)
# On a 2-core development machine (measured 2026-12-02, AVX-512/AMX): feature extraction 23 min (25,000 views:
# val clean + belt, train clean + 2 belt views, at 14-20 img/s; the test split is not cached), training ~1 min an
# epoch (30 epochs), the test split from photos 4 min, conversion and evaluation ~15 min. Without AVX-512 the
# extraction is ~3x slower. Everything is resumable: the feature cache is kept, a rerun skips what is there.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
work=${1:-$HOME/.cache/smartbin}
py=.venv/bin/python
mkdir -p "$work"
exec > >(tee -a "$work/rebuild.log") 2>&1
weights=$work/imagenet/resnet50_imagenet_notop.weights.h5
[[ -f $weights ]] || $py ../shared/tools/imagenet_resnet50.py "$work/imagenet"
$py -m models.train --data ../shared/data/garbage12 --weights "$weights" --cache "$work/features" \
  --out "$work/garbage12_resnet50.keras"
[[ -d $work/split/test ]] || $py -m models.split --link "$work/split"
$py -m convert "$work/garbage12_resnet50.keras" --out models/garbage12_resnet50_int8.tflite \
  --calibration "$work/split/train" --count 300 --validation "$work/split/test"
$py -m models.evaluate --keras "$work/garbage12_resnet50.keras"
$py -m models.calibrate
$py -m models.report
echo "rebuild done: models/ holds the new model, card and README; check the figures, then commit"
