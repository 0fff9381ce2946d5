"""Real-model evaluation of KV-cache compression (``python -m kvmerge.eval``).

* :func:`run_eval` -- compute everything (returns a JSON-able dict),
* :func:`write_report` -- ``results.md`` + PNG figures,
* :func:`main` -- the command line (``--quick``: stories260K, seconds; default: SmolLM2).
"""
from .run import EvalConfig, full_config, quick_config, run_eval, summarize  # noqa: F401
from .report import make_plots, quality_table, write_report  # noqa: F401
from .cli import main  # noqa: F401
