#!/usr/bin/env bash
# Installs the benchmark baselines from PyPI into a virtual environment (default ~/.cache/blendd-bench-venv): PyTorch (fp32 and
# bf16 autocast), transformers, ONNX Runtime and CTranslate2. CI never runs it. Then run the benches with the
# environment first on PATH, e.g.  PATH="$HOME/.cache/blendd-bench-venv/bin:$PATH" blendd bench rank
set -euo pipefail
venv="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/blendd-bench-venv}"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q torch transformers sentencepiece onnx onnxscript onnxruntime ctranslate2
"$venv/bin/python" -c 'import torch, transformers, onnxruntime, ctranslate2; print("baselines:", torch.__version__, transformers.__version__, onnxruntime.__version__, ctranslate2.__version__)'
