"""Seeds and margins of the learning tests (tests that assert a model learned something).

Every learning test carries ``@pytest.mark.learning``, takes its model seed from :func:`learning_seed`
(``DGSS_TEST_SEED``, default 0) and reports how far it cleared its bar with :func:`record_margin`.
``tools/learning_margins.py`` runs them over seeds and CPU settings (ISA emulation, thread counts) and
prints the worst margin of each; the worst margins seen are written into each test's docstring.
"""

from __future__ import annotations

import json
import os


def learning_seed(default: int = 0) -> int:
    """The seed of this run's model initialisation and data order (``DGSS_TEST_SEED`` overrides)."""
    return int(os.environ.get("DGSS_TEST_SEED", default))


def record_margin(test: str, margin: float, **details) -> None:
    """Append ``{"test", "margin", **details}`` to ``$DGSS_MARGIN_LOG`` (one JSON object per line) when set.
    ``margin`` > 0 means the bar was cleared, in the test's own unit (named in ``details["unit"]``)."""
    path = os.environ.get("DGSS_MARGIN_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"test": test, "margin": float(margin), **details}) + "\n")


def step_margin(acc: float, steps: int, max_steps: int, target: float) -> float:
    """Margin of an overfit test that stops at ``target`` accuracy: the share of its step budget left, or
    (when the target was missed) how far below the target it ended (negative)."""
    return (max_steps - steps) / max_steps if acc >= target else acc - target
