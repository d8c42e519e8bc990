"""What the commands print on stdout, and the statuses they exit with."""

from __future__ import annotations

import json
from typing import Any

EXIT_NO_SPACE = 1
"""A full disk: one line naming the output."""
EXIT_USAGE = 2
"""A mistake in the command line or its inputs (a `widedeep.WidedeepError`): one line."""
EXIT_DIVERGED = 3
"""A training run whose loss became NaN or infinite."""


def print_json(payload: dict[str, Any]) -> None:
    """Prints `payload` as indented JSON with sorted keys (non-JSON values as strings)."""
    print(json.dumps(payload, indent=2, sort_keys=True, default=str))


def metrics_sentence(metrics: dict[str, Any]) -> str:
    """`test AUC 0.7254, GAUC 0.7168, log loss 0.5257 on 50,000 impressions` (+ the oracle)."""
    text = (
        f"AUC {metrics['auc']:.4f}, GAUC {metrics['gauc']:.4f}, log loss {metrics['logloss']:.4f} "
        f"on {metrics['examples']:,} impressions"
    )
    if "oracle_auc" in metrics:
        text += f" (the simulator's oracle: AUC {metrics['oracle_auc']:.4f})"
    return text
