"""PRM evaluation: step-level accuracy / F1 and ProcessBench-style earliest-error identification.

Inputs, one item per solution (chain of steps):

* ``predictions``: the PRM's score of every step (floats; higher = better step);
* ``references``: the gold label of every step (1 = correct, 0 = erroneous; soft labels are
  read as correct when >= 0.5).

A step is predicted correct when its score is >= ``threshold`` (default 0.5).

Step-level: ``step_accuracy``, ``step_f1_correct`` and ``step_f1_error`` (F1 of each class) and
``step_f1`` (their macro mean), over all labelled steps of all solutions.

ProcessBench-style (Zheng et al., 2024): the gold label of a solution is the index of its
earliest erroneous step, or -1 when every step is correct; the prediction is the first step
scored below the threshold, or -1. ``error_accuracy`` is the exact-match accuracy over erroneous
solutions, ``correct_accuracy`` over fully correct ones, and ``processbench_f1`` their harmonic
mean. A metric with no solutions to average over is NaN (never a silent 0).
"""

import math

import datasets
import evaluate

_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of list of float): step scores per solution.
    references (list of list of float): step labels per solution (1 correct, 0 erroneous).
    threshold (float): a step scoring at least this is predicted correct. Default 0.5.
Returns:
    step_accuracy, step_f1, step_f1_correct, step_f1_error, error_accuracy, correct_accuracy,
    processbench_f1, n_steps, n_solutions, n_erroneous, n_correct.
Examples:
    >>> m = evaluate.load("path/to/rewardkit/metrics/prm_eval")
    >>> m.compute(predictions=[[0.9, 0.2]], references=[[1, 0]])["processbench_f1"]
    nan
"""


def earliest_error(labels_or_flags):
    """Index of the first False/0 entry (a step judged or labelled wrong), or -1."""
    for i, ok in enumerate(labels_or_flags):
        if not ok:
            return i
    return -1


def _f1(tp, fp, fn):
    denom = 2 * tp + fp + fn
    return 2 * tp / denom if denom else float("nan")


def _ratio(a, b):
    return a / b if b else float("nan")


def compute_prm_metrics(predictions, references, threshold=0.5):
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    tp = tn = fp = fn = 0  # positive class = correct step
    err_hit = err_n = cor_hit = cor_n = 0
    for i, (scores, labels) in enumerate(zip(predictions, references)):
        if len(scores) != len(labels):
            raise ValueError(f"solution {i}: {len(scores)} step scores but {len(labels)} labels")
        pred_ok = [float(s) >= threshold for s in scores]
        gold_ok = [float(y) >= 0.5 for y in labels]
        for p, g in zip(pred_ok, gold_ok):
            tp += p and g
            tn += (not p) and (not g)
            fp += p and (not g)
            fn += (not p) and g
        gold_err, pred_err = earliest_error(gold_ok), earliest_error(pred_ok)
        if gold_err >= 0:
            err_n += 1
            err_hit += pred_err == gold_err
        else:
            cor_n += 1
            cor_hit += pred_err == -1
    f1_correct = _f1(tp, fp, fn)
    f1_error = _f1(tn, fn, fp)
    err_acc, cor_acc = _ratio(err_hit, err_n), _ratio(cor_hit, cor_n)
    if math.isnan(err_acc) or math.isnan(cor_acc):
        pb_f1 = float("nan")
    else:
        pb_f1 = 2 * err_acc * cor_acc / (err_acc + cor_acc) if (err_acc + cor_acc) else 0.0
    n = tp + tn + fp + fn
    return {
        "step_accuracy": _ratio(tp + tn, n),
        "step_f1": (f1_correct + f1_error) / 2,
        "step_f1_correct": f1_correct,
        "step_f1_error": f1_error,
        "error_accuracy": err_acc,
        "correct_accuracy": cor_acc,
        "processbench_f1": pb_f1,
        "n_steps": n,
        "n_solutions": len(predictions),
        "n_erroneous": err_n,
        "n_correct": cor_n,
    }


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PrmEval(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Value("float64")),
                "references": datasets.Sequence(datasets.Value("float64")),
            }),
        )

    def _compute(self, predictions, references, threshold=0.5):
        return compute_prm_metrics(predictions, references, threshold)
