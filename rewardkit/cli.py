"""The ``rewardkit`` command: list plugins, score files, and the commands plugins register."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

EPILOG = """examples:
  rewardkit plugins
  rewardkit score data.jsonl --reward math.accuracy=1.0 --reward format.boxed=0.1 -o scores.jsonl
  rewardkit score data.jsonl --spec rewards.yaml --completion-column response
"""


def _parse_reward_args(items: Sequence[str]) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for item in items:
        name, _, weight = item.partition("=")
        try:
            spec[name.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise SystemExit(f"--reward {item!r}: expected NAME or NAME=WEIGHT") from None
    return spec


# -- plugins ------------------------------------------------------------------------------------

def _configure_plugins(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _run_plugins(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from rewardkit.plugins import list_hooks, list_plugins, list_rewards

    infos = list_plugins()
    if args.json:
        print(json.dumps([vars(i) for i in infos], indent=2))
        return 0
    # piped output gets a wide table instead of rich's 80-column default, so names are not folded
    console = Console(width=None if sys.stdout.isatty() else 160)
    table = Table(title="rewardkit plugins")
    for col in ("plugin", "version", "rewards", "hooks", "commands", "error"):
        table.add_column(col, overflow="fold")
    for i in infos:
        table.add_row(i.name, i.version or "", "\n".join(i.rewards), "\n".join(i.hooks), "\n".join(i.commands),
                      (i.error or "").splitlines()[0] if i.error else "")
    console.print(table)
    rewards = list_rewards()
    rt = Table(title="rewards")
    for col in ("name", "kind", "plugin", "description"):
        rt.add_column(col, overflow="fold")
    for name, e in sorted(rewards.items()):
        rt.add_row(name, e.kind, e.plugin, e.description)
    console.print(rt)
    hooks = list_hooks()
    if hooks:
        ht = Table(title="trainer hooks")
        for col in ("name", "plugin", "description"):
            ht.add_column(col, overflow="fold")
        for name, h in sorted(hooks.items()):
            ht.add_row(name, h.plugin, h.description)
        console.print(ht)
    return 1 if any(i.error for i in infos) else 0


# -- score --------------------------------------------------------------------------------------

def _configure_score(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="a .jsonl/.json/.parquet file or a datasets directory (save_to_disk)")
    p.add_argument("--reward", action="append", default=[], metavar="NAME[=WEIGHT]",
                   help="a registered reward and its weight; repeat for several")
    p.add_argument("--spec", help="a YAML reward spec (a 'rewards' mapping); params per reward")
    p.add_argument("--prompt-column", default="prompt")
    p.add_argument("--completion-column", default="completion")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("-o", "--output", help="write one JSON line per sample here (default: stdout)")
    p.add_argument("--on-error", choices=["raise", "none"], default="none",
                   help="what a reward exception does to a row (default: none, counted)")


def _run_score(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    from tqdm.auto import tqdm

    from rewardkit.compose import compose, load_spec
    from rewardkit.data import load_records

    spec = load_spec(args.spec) if args.spec else {}
    spec.update(_parse_reward_args(args.reward))
    if not spec:
        raise SystemExit("give at least one --reward NAME[=WEIGHT] or a --spec file")
    rewards = compose(spec, on_error=args.on_error)
    rows = load_records(args.data)
    if rows and args.completion_column not in rows[0]:
        raise SystemExit(f"{args.data}: no column {args.completion_column!r}; columns: {sorted(rows[0])}")
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    sums: dict[str, list[float]] = {n: [] for n in [*rewards.names, "total"]}
    nones: dict[str, int] = dict.fromkeys(sums, 0)
    try:
        for start in tqdm(range(0, len(rows), args.batch_size), desc="scoring", unit="batch",
                          disable=not args.output):
            chunk = rows[start:start + args.batch_size]
            columns = {k: [r.get(k) for r in chunk] for k in chunk[0]
                       if k not in (args.prompt_column, args.completion_column)}
            prompts = [r.get(args.prompt_column, "") for r in chunk]
            completions = [r[args.completion_column] for r in chunk]
            ids = columns.pop("completion_ids", None)
            scores = rewards.score(prompts, completions, ids, **columns)
            for i in range(len(chunk)):
                rec = {"index": start + i, **{n: scores[n][i] for n in scores}}
                out.write(json.dumps(rec) + "\n")
                for n in scores:
                    v = scores[n][i]
                    if v is None:
                        nones[n] += 1
                    else:
                        sums[n].append(v)
    finally:
        if args.output:
            out.close()
    console = Console(stderr=True)
    table = Table(title=f"{len(rows)} samples")
    for col in ("reward", "weight", "mean", "min", "max", "none"):
        table.add_column(col, justify="right" if col != "reward" else "left")
    weights = dict(zip(rewards.names, rewards.weights))
    for n, vals in sums.items():
        mean = sum(vals) / len(vals) if vals else float("nan")
        table.add_row(n, "" if n == "total" else f"{weights[n]:g}", f"{mean:.4f}",
                      f"{min(vals):.4f}" if vals else "-", f"{max(vals):.4f}" if vals else "-", str(nones[n]))
    console.print(table)
    return 0


CORE_COMMANDS = {
    "plugins": (_configure_plugins, _run_plugins, "list plugins, their rewards, hooks and load errors"),
    "score": (_configure_score, _run_score, "score a data file with composed rewards (JSONL out + summary)"),
}


def _unavailable(message: str):
    def run(args: argparse.Namespace) -> int:
        print(f"rewardkit: {message}", file=sys.stderr)
        return 1

    return run


def build_parser() -> argparse.ArgumentParser:
    from rewardkit import __version__
    from rewardkit.plugins import CORE_COMMANDS as RESERVED
    from rewardkit.plugins import list_commands, unavailable_commands

    assert set(RESERVED) == set(CORE_COMMANDS), "rewardkit.plugins.CORE_COMMANDS is out of date"
    parser = argparse.ArgumentParser(
        prog="rewardkit",
        description="Reward plugins from RL post-training papers, composed onto TRL trainers.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"rewardkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands: dict[str, Any] = {}
    for name, (configure, run, help_) in CORE_COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        configure(sp)
        commands[name] = run
    for name, entry in sorted(list_commands().items()):
        try:
            # on a throwaway parser first: one plugin's broken configure() must not take every command down
            entry.configure(argparse.ArgumentParser(prog=f"rewardkit {name}", add_help=False))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            message = (f"command {name!r} of plugin {entry.plugin!r} is not available: its configure() "
                       f"raised {type(exc).__name__}: {exc}")
            sp = sub.add_parser(name, help=f"(unavailable: {type(exc).__name__} in configure)", add_help=False)
            sp.set_defaults(_ignores_rest=True)
            commands[name] = _unavailable(message)
            continue
        sp = sub.add_parser(name, help=entry.help, description=entry.help)
        entry.configure(sp)
        commands[name] = entry.run
    for name, why in sorted(unavailable_commands().items()):
        sp = sub.add_parser(name, help=f"(unavailable: {why.splitlines()[0]})", add_help=False)
        sp.set_defaults(_ignores_rest=True)
        commands[name] = _unavailable(f"command {name!r} is not available: {why}")
    parser.set_defaults(_commands=commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "_ignores_rest", False):  # only an unavailable command ignores them
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not args.command:
        parser.print_help()
        return 0
    code = args._commands[args.command](args)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
