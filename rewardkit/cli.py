"""The ``rewardkit`` command: list plugins, score files, and the commands plugins register."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

EPILOG = """examples:
  rewardkit plugins
  rewardkit score data.jsonl --reward math.accuracy=1.0 --reward format.boxed=0.1 -o scores.jsonl
  rewardkit score data.jsonl --spec rewards.yaml --completion-column response
"""


def _reward_arg(text: str) -> tuple[str, float]:
    name, sep, weight = text.partition("=")
    name = name.strip()
    try:
        value = float(weight) if sep else 1.0
    except ValueError:
        value = math.nan
    if not name or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME or NAME=WEIGHT with a finite number")
    return name, value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer")
    return value


# -- plugins ------------------------------------------------------------------------------------

def _configure_plugins(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _run_plugins(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from rewardkit.plugins import list_hooks, list_plugins, list_rewards

    infos = list_plugins()
    failed = 1 if any(i.error for i in infos) else 0  # a plugin that failed or was disabled
    if args.json:
        print(json.dumps([vars(i) for i in infos], indent=2))
        return failed
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
    return failed


# -- score --------------------------------------------------------------------------------------

def _configure_score(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="a .jsonl/.json/.parquet/.csv file or a datasets directory (save_to_disk)")
    p.add_argument("--reward", action="append", default=[], type=_reward_arg, metavar="NAME[=WEIGHT]",
                   help="a registered reward and its weight; repeat for several")
    p.add_argument("--spec", help="a YAML reward spec (a 'rewards' mapping); params per reward")
    p.add_argument("--prompt-column", default="prompt", help="(a row without it gets an empty prompt)")
    p.add_argument("--completion-column", default="completion")
    p.add_argument("--id-column", help="a column that identifies each row once; --resume then skips rows by id "
                                       "(default: by row number, and the input must not change)")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("-o", "--output", help="write one JSON line per sample here, atomically: rows go to "
                                          "OUTPUT.partial, renamed to OUTPUT at the end (default: stdout)")
    p.add_argument("--resume", action="store_true",
                   help="continue OUTPUT.partial left by a killed run instead of starting over")
    p.add_argument("--on-error", choices=["raise", "none"], default="raise",
                   help="a reward that raises on a row, or a row that cannot be scored (missing column, null "
                        "completion): raise stops with a message naming the rows (default); none scores on "
                        "and counts the row under 'errors' (the row's 'errors' field says why)")


def _run_score(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    from rewardkit.compose import load_spec
    from rewardkit.score_file import ScoreError, ScoreOptions, run_score, summary_table

    try:
        spec = load_spec(args.spec) if args.spec else {}
    except Exception as exc:  # a missing file, bad YAML: say which, no traceback
        raise SystemExit(f"rewardkit score: error: cannot read --spec {args.spec}: {exc}") from None
    spec.update(dict(args.reward))
    if not spec:
        raise SystemExit("rewardkit score: error: give at least one --reward NAME[=WEIGHT] or a --spec file")
    opts = ScoreOptions(data=args.data, spec=spec, output=args.output, prompt_column=args.prompt_column,
                        completion_column=args.completion_column, id_column=args.id_column,
                        batch_size=args.batch_size, on_error=args.on_error, resume=args.resume,
                        other_inputs=(args.spec,) if args.spec else ())
    console = Console(stderr=True)
    try:
        summary = run_score(opts)
    except ScoreError as exc:
        print(f"rewardkit score: error: {exc}", file=sys.stderr)
        return 1
    console.print(summary_table(summary))
    if summary.errors["total"]:  # a row with any error has no total
        console.print(f"[yellow]warning:[/] {summary.errors['total']} of {summary.rows} rows have errors "
                      f"(counted under 'errors'; each row's 'errors' field says why). "
                      f"First: {escape(summary.first_error or '')}", highlight=False, soft_wrap=True)
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
