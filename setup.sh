#!/usr/bin/env bash
# smartbin set-up: makes .venv and installs smartbin into it. Idempotent: run it again after a `git pull`.
#   ./setup.sh         the runtime (on the Pi, or anywhere): LiteRT, OpenCV, gpiozero
#   ./setup.sh --dev   plus conversion, training and tests: TensorFlow, Keras, matplotlib, pytest
# On Raspberry Pi OS the venv sees apt's packages (--system-site-packages) so that python3-picamera2 /
# libcamera and python3-lgpio, which are not on PyPI, are importable.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

dev=0
for arg in "$@"; do
  case $arg in
    --dev) dev=1 ;;
    -h|--help) sed -n '2,6p' "$0" | cut -c3-; exit 0 ;;
    *) echo "setup.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

say() { printf 'setup: %s\n' "$*"; }

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
  || { echo "setup.sh: Python 3.11 or newer is needed (found: $("$python" --version 2>&1))" >&2; exit 1; }

model=$(tr -d '\0' 2>/dev/null </proc/device-tree/model || true)
case $model in
  "Raspberry Pi 5"*) board="Pi 5" ;;
  "Raspberry Pi 4"*) board="Pi 4" ;;
  "Raspberry Pi"*)   board="other Pi" ;;
  *)                 board="" ;;
esac

venv_args=()
if [[ -n $board ]]; then
  say "board: $model ($board) - the venv will see apt's packages (picamera2, lgpio)"
  venv_args+=(--system-site-packages)
  missing=()
  "$python" -c 'import picamera2' 2>/dev/null || missing+=(python3-picamera2)
  [[ $board == "Pi 5" ]] && { "$python" -c 'import lgpio' 2>/dev/null || missing+=(python3-lgpio); }
  if ((${#missing[@]})); then
    say "apt packages missing: ${missing[*]} - install them with: sudo apt install -y ${missing[*]}"
  fi
  [[ $board == "Pi 5" ]] && say "Pi 5 GPIO: gpiozero uses lgpio (GPIOZERO_PIN_FACTORY=lgpio); RPi.GPIO and pigpio do not work there"
else
  say "board: not a Raspberry Pi ($(uname -m)) - gates run on gpiozero's mock pins, no camera needed"
fi

if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv "${venv_args[@]}" .venv
  say "created .venv ${venv_args[*]}"
else
  say "using existing .venv"
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" --upgrade pip

target=.
((dev)) && target=".[dev]"
"${pip[@]}" -e "$target"
say "installed smartbin $([[ $dev == 1 ]] && echo 'with dev tools (TensorFlow, Keras, pytest)' || echo runtime)"
if ! .venv/bin/python -c 'import ai_edge_litert.interpreter' 2>/dev/null; then
  # No LiteRT wheel for this platform (e.g. 32-bit Arm): tflite-runtime 2.14 instead, which needs NumPy 1.
  say "ai-edge-litert unavailable on $(uname -m); installing tflite-runtime with numpy<2"
  "${pip[@]}" "numpy<2" tflite-runtime
fi

runtime=$(.venv/bin/python -c 'from edge.runtime import interpreter_class; print(interpreter_class()[1])')
say "TFLite runtime: $runtime"
say "done. Try: .venv/bin/smartbin check   and   .venv/bin/smartbin run --max-items 10"
