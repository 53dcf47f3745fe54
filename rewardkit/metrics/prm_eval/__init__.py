"""PRM evaluation metric: ``evaluate.load(rewardkit.metrics.prm_eval.METRIC_PATH)``.

The metric logic lives in ``prm_eval.py`` (self-contained, as ``evaluate`` copies that file into
its module cache); :func:`compute_prm_metrics` is the same computation as a plain function.
"""

from pathlib import Path

from rewardkit.metrics.prm_eval.prm_eval import compute_prm_metrics, earliest_error

METRIC_PATH = str(Path(__file__).resolve().parent)


def load():
    """The ``evaluate`` module, loaded from this directory (no network)."""
    import evaluate

    return evaluate.load(METRIC_PATH)


__all__ = ["METRIC_PATH", "compute_prm_metrics", "earliest_error", "load"]
