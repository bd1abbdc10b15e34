#!/usr/bin/env bash
# Rebuild the shipped model end to end, in the background-friendly order the recipe needs:
# ImageNet weights → features + training → split links → int8 conversion → test figures → Markdown card.
#   models/rebuild.sh [WORK_DIR]        (default ~/.cache/smartbin; logs to WORK_DIR/rebuild.log)
# On the 2-core development machine: feature extraction ~77 min (35,500 image views at ~6 img/s), training
# ~6 min an epoch (12 epochs), conversion ~5 min, evaluation ~5 min. Everything is resumable: the feature
# cache is kept, a rerun skips what is there.
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
$py -m models.report
echo "rebuild done: models/ holds the new model, card and README; check the figures, then commit"
