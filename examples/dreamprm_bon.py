"""Best-of-N with DreamPRM PRMs: pick the best of N chains per question, compare PRMs.

    python examples/dreamprm_bon.py --data runs/dreamprm_bilevel/eval.jsonl \
        --prm runs/dreamprm_bilevel/prm_domain_s0 runs/dreamprm_bilevel/prm_none_s0

``--data``: rows ``{question, responses: [N chains], solution}`` (what ``dreamprm_bilevel.py`` writes;
the ``rewardkit bon`` format). Every candidate is graded by ``math.accuracy``; each PRM scores every
step, aggregates (v1: mean log-odds, 1.5: mean p('+')) and picks the argmax (ties: the later one,
as the official code). When the generic ``rewardkit bon`` API (rewardkit-reasonflux) is installed,
its numbers for ``dreamprm.prm`` are printed too (its ties go to the earlier candidate). Arguments
come from flags or a YAML file (``--config``), as in TRL's scripts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class BonArguments:
    data: str = field(metadata={"help": "rows {question, responses, solution} (JSONL / JSON)"})
    prm: list[str] = field(metadata={"help": "saved DreamPRM models to compare"})
    batch_size: int = 64
    output: str | None = field(default=None, metadata={"help": "write the report as JSON here"})


def main(args: BonArguments) -> dict[str, Any]:
    from rewardkit_dreamprm import best_of_n_eval, load_prm, make_chain

    from rewardkit import get_reward
    from rewardkit.data import load_records

    rows = load_records(args.data)
    grader = get_reward("math.accuracy", on_error="none")
    problems = []
    for r in rows:
        resp = list(r["responses"])
        correct = grader([r["question"]] * len(resp), resp, solution=[r["solution"]] * len(resp))
        problems.append({"candidates": [make_chain(r["question"], x, "heuristic") for x in resp],
                         "correct": [bool(c) for c in correct], "domain": r.get("domain", "all")})
    report: dict[str, Any] = {}
    for path in args.prm:
        res = best_of_n_eval(load_prm(path), problems, batch_size=args.batch_size)
        res.pop("picks")
        report[path] = res
        print(f"{path}: best-of-{len(problems[0]['candidates'])} accuracy {res['accuracy']:.3f} "
              f"(oracle {res['oracle']:.3f}, random pick {res['mean_candidate']:.3f}) by domain {res['by_domain']}; "
              f"good-bad margin by domain {({d: round(v, 2) for d, v in res['margin_by_domain'].items()})}")
    try:
        from rewardkit_reasonflux.select import best_of_n
    except ImportError:
        print("(rewardkit-reasonflux not installed: no generic `rewardkit bon` comparison)")
    else:
        for path in args.prm:
            rep = best_of_n(rows, "dreamprm.prm", params={"model": path}, batch_size=args.batch_size)
            top = rep["n"][max(rep["n"])]
            print(f"rewardkit bon, dreamprm.prm model={path}: N={max(rep['n'])} bon {top['bon']:.3f} "
                  f"majority {top['majority']:.3f} random {top['random']:.3f} oracle {top['oracle']:.3f}")
            report[path]["rewardkit_bon"] = {str(k): v for k, v in rep["n"].items()}
    if args.output:
        with open(args.output, "w") as fh:
            json.dump(report, fh, indent=2)
    return report


if __name__ == "__main__":
    from trl import TrlParser

    main(*TrlParser(BonArguments).parse_args_and_config())
