#!/usr/bin/env bash
# Create .venv and install nlrd-search into it: the CPU build of PyTorch when no CUDA GPU is present,
# then the project (editable, so Ray workers import the same code). `./setup.sh --dev` adds the test tools.
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}
extras=""
if [ "${1:-}" = "--dev" ]; then extras="[dev]"; fi

if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# PyPI's Linux torch wheels bundle CUDA (gigabytes); PyTorch's CPU index serves the CPU build.  Where that index
# does not answer (offline, behind a mirror), torch==2.13.0 comes from pip's configured indexes and find-links.
cpu_index=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
answers() {
  .venv/bin/python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/torch/', timeout=10)" \
    "${1%/}" 2>/dev/null
}
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "${pip[@]}" torch
  elif answers "$cpu_index"; then
    "${pip[@]}" --index-url "$cpu_index" "torch==2.13.0"
  else
    "${pip[@]}" "torch==2.13.0"
  fi
fi
"${pip[@]}" -e ".${extras}"
echo "nlrd-search is installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
