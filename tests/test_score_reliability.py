"""`rewardkit score` never loses data silently: per-row columns, errors apart from None, argument
checks, atomic output, and a run killed with SIGKILL that resumes to the uninterrupted result."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rewardkit.cli import main
from rewardkit.testing import write_plugin_distribution

SLOW_PLUGIN = """
    import os
    import time

    from rewardkit import Reward, hookimpl


    class SlowLength(Reward):
        # deterministic per row; sleeps so that a run can be killed half way; logs every row it scores
        def score(self, sample):
            time.sleep(0.02)
            with open(os.environ["SLOW_LOG"], "a") as fh:
                fh.write(sample.text + "\\n")
            return (len(sample.text) % 7) / 7


    @hookimpl
    def rewardkit_register_rewards(register):
        register("slow.length", SlowLength, kind="outcome")
"""


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def math_rows(n: int = 64) -> list[dict]:
    return [{"prompt": f"{i}+1?", "completion": f"\\boxed{{{i + 1 if i % 3 else i}}}", "solution": str(i + 1)}
            for i in range(n)]


def score(*args: str) -> int:
    return main(["score", *args])


# -- per-row columns ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("order", ["as_is", "reversed"])
def test_one_row_without_the_gold_column_is_one_counted_error_in_any_order(tmp_path, capsys, order):
    rows = math_rows()
    del rows[0]["solution"]
    if order == "reversed":
        rows = rows[::-1]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    out = tmp_path / "s.jsonl"
    assert score(str(data), "--reward", "math.accuracy", "--reward", "format.boxed=0.5", "-o", str(out),
                 "--on-error", "none") == 0
    got = read_jsonl(out)
    bad = [r for r in got if r["errors"]]
    assert len(bad) == 1 and rows[bad[0]["index"]]["prompt"] == "0+1?"
    assert "'solution'" in bad[0]["errors"]["math.accuracy"] and bad[0]["math.accuracy"] is None
    assert bad[0]["format.boxed"] == 1.0 and bad[0]["total"] is None  # other rewards still scored
    # every other row is scored, the same in both orders: 2 of 3 are right
    by_prompt = {rows[r["index"]]["prompt"]: r["math.accuracy"] for r in got if not r["errors"]}
    assert len(by_prompt) == 63 and all(v == (0.0 if int(p.split("+")[0]) % 3 == 0 else 1.0)
                                        for p, v in by_prompt.items())
    err = capsys.readouterr().err
    assert "1 of 64 rows have errors" in err and "'solution'" in err


def test_a_missing_required_column_stops_the_run_naming_it_and_the_rows(tmp_path, capsys):
    rows = math_rows(10)
    for i in (3, 7):
        del rows[i]["solution"]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    out = tmp_path / "s.jsonl"
    assert score(str(data), "--reward", "math.accuracy", "-o", str(out)) == 1
    err = capsys.readouterr().err
    assert "reward 'math.accuracy' failed on rows 3, 7: RewardInputError" in err and "'solution'" in err
    assert not out.exists()


def test_a_gold_column_missing_everywhere_is_an_error_or_counted_never_silent(tmp_path, capsys):
    rows = [{"prompt": "p", "completion": "\\boxed{1}", "answer": "1"} for _ in range(5)]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    out = tmp_path / "s.jsonl"
    assert score(str(data), "--reward", "math.accuracy", "-o", str(out)) == 1
    assert "failed on rows 0, 1, 2, 3, 4" in capsys.readouterr().err and not out.exists()
    assert score(str(data), "--reward", "math.accuracy", "-o", str(out), "--on-error", "none") == 0
    got = read_jsonl(out)
    assert all(r["math.accuracy"] is None and "'solution'" in r["errors"]["math.accuracy"] for r in got)
    err = capsys.readouterr().err
    assert "5 of 5 rows have errors" in err
    table_row = next(line for line in err.splitlines() if "math.accuracy" in line and "│" in line)
    assert table_row.split("│")[-2].strip() == "5" and table_row.split("│")[-3].strip() == "0"  # errors, none


def test_errors_and_does_not_apply_are_reported_apart(tmp_path, capsys):
    rows = [{"prompt": "a", "completion": "\\boxed{2}", "solution": "2"},
            {"prompt": "b", "completion": "\\boxed{2}", "solution": None},   # does not apply
            {"prompt": "c", "completion": "\\boxed{2}"}]                     # an error
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    out = tmp_path / "s.jsonl"
    assert score(str(data), "--reward", "math.accuracy", "--reward", "format.boxed", "-o", str(out),
                 "--on-error", "none") == 0
    got = read_jsonl(out)
    assert [r["math.accuracy"] for r in got] == [1.0, None, None]
    assert [bool(r["errors"]) for r in got] == [False, False, True]
    assert [r["total"] for r in got] == [2.0, 1.0, None]
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "math.accuracy" in x and "│" in x)
    assert [c.strip() for c in line.split("│")[-3:-1]] == ["1", "1"]  # none 1, errors 1


@pytest.mark.parametrize("completion,problem", [(None, "column 'completion' is null"),
                                                (5, "column 'completion': completion of type int")])
def test_a_bad_completion_is_a_clear_error_or_a_counted_one(tmp_path, capsys, completion, problem):
    rows = [{"prompt": "a", "completion": "\\boxed{2}", "solution": "2"},
            {"prompt": "b", "completion": completion, "solution": "2"}]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    out = tmp_path / "s.jsonl"
    assert score(str(data), "--reward", "math.accuracy", "-o", str(out)) == 1
    assert f"row 1 cannot be scored: {problem}" in capsys.readouterr().err
    assert score(str(data), "--reward", "math.accuracy", "--reward", "format.boxed", "-o", str(out),
                 "--on-error", "none") == 0
    got = read_jsonl(out)
    assert got[0]["total"] == 2.0 and got[0]["errors"] == {}
    assert got[1]["math.accuracy"] is None and got[1]["total"] is None
    assert set(got[1]["errors"]) == {"math.accuracy", "format.boxed"}
    assert all(m.startswith(problem) for m in got[1]["errors"].values())


# -- arguments and files ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["0", "-3", "x"])
def test_batch_size_must_be_positive(tmp_path, capsys, value):
    data = write_jsonl(tmp_path / "d.jsonl", math_rows(3))
    out = tmp_path / "s.jsonl"
    with pytest.raises(SystemExit) as exc:
        score(str(data), "--reward", "format.boxed", "--batch-size", value, "-o", str(out))
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--batch-size" in err and f"{value!r}: expected a positive integer" in err
    assert not out.exists() and not Path(str(out) + ".partial").exists()


@pytest.mark.parametrize("weight", ["inf", "nan", "x", ""])
def test_reward_weight_must_be_a_finite_number(tmp_path, capsys, weight):
    with pytest.raises(SystemExit) as exc:
        score(str(tmp_path / "d.jsonl"), "--reward", f"format.boxed={weight}")
    assert exc.value.code == 2 and "NAME=WEIGHT" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["same", "symlink", "relative"])
def test_output_that_is_the_input_is_refused(tmp_path, capsys, monkeypatch, how):
    data = write_jsonl(tmp_path / "d.jsonl", math_rows(3))
    before = data.read_bytes()
    target = str(data)
    if how == "symlink":
        (tmp_path / "link.jsonl").symlink_to(data)
        target = str(tmp_path / "link.jsonl")
    elif how == "relative":
        monkeypatch.chdir(tmp_path)
        target = "./sub/../d.jsonl"
        (tmp_path / "sub").mkdir()
    assert score(str(data), "--reward", "format.boxed", "-o", target) == 1
    assert "refusing to write" in capsys.readouterr().err
    assert data.read_bytes() == before


def test_a_failed_run_keeps_the_old_output_and_a_partial_file(tmp_path, capsys):
    rows = math_rows(40)
    del rows[30]["solution"]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    out = tmp_path / "s.jsonl"
    out.write_text("old results\n")
    assert score(str(data), "--reward", "math.accuracy", "-o", str(out), "--batch-size", "8") == 1
    err = capsys.readouterr().err
    assert "rerun with --resume" in err
    assert out.read_text() == "old results\n"  # untouched until a run completes
    partial = Path(str(out) + ".partial")
    assert [r["index"] for r in read_jsonl(partial)] == list(range(24))  # the batches before row 30
    # a new run does not silently throw the partial away, and a resume must use the same settings
    assert score(str(data), "--reward", "math.accuracy", "-o", str(out)) == 1
    assert "pass --resume to continue it" in capsys.readouterr().err
    assert score(str(data), "--reward", "math.accuracy", "-o", str(out), "--resume", "--on-error", "none") == 1
    assert "on_error changed" in capsys.readouterr().err
    assert score(str(data), "--reward", "format.boxed", "-o", str(out), "--resume") == 1
    assert "rewards" in capsys.readouterr().err


def test_resume_by_id_after_the_input_was_fixed_and_reordered(tmp_path, capsys):
    rows = [dict(r, uid=f"u{i}") for i, r in enumerate(math_rows(40))]
    broken = [dict(r) for r in rows]
    del broken[30]["solution"]
    out = tmp_path / "s.jsonl"
    data = write_jsonl(tmp_path / "d.jsonl", broken)
    assert score(str(data), "--reward", "math.accuracy", "-o", str(out), "--batch-size", "8",
                 "--id-column", "uid") == 1
    assert len(read_jsonl(Path(str(out) + ".partial"))) == 24
    fixed = rows[:]
    random.Random(0).shuffle(fixed)
    write_jsonl(data, fixed)
    assert score(str(data), "--reward", "math.accuracy", "-o", str(out), "--batch-size", "8",
                 "--id-column", "uid", "--resume") == 0
    got = read_jsonl(out)
    assert sorted(r["id"] for r in got) == sorted(r["uid"] for r in rows)  # every row exactly once
    fresh = tmp_path / "fresh.jsonl"
    assert score(str(data), "--reward", "math.accuracy", "-o", str(fresh), "--id-column", "uid") == 0
    assert {r["id"]: r["math.accuracy"] for r in got} == {r["id"]: r["math.accuracy"] for r in read_jsonl(fresh)}
    assert "40 samples" in capsys.readouterr().err


def test_id_column_must_identify_every_row_once(tmp_path, capsys):
    rows = [dict(r, uid="same") for r in math_rows(3)]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    assert score(str(data), "--reward", "format.boxed", "--id-column", "uid", "-o", str(tmp_path / "o")) == 1
    assert "rows 0 and 1 have the same 'uid'" in capsys.readouterr().err


# -- a real kill ------------------------------------------------------------------------------------------

@pytest.fixture
def slow_plugin(tmp_path):
    return write_plugin_distribution(tmp_path / "site", "rkslow", SLOW_PLUGIN, entry_point="slow")


def cli(site: Path, log: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, SLOW_LOG=str(log))
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    return subprocess.Popen([sys.executable, "-m", "rewardkit.cli", "score", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(tmp_path, slow_plugin):
    rows = [{"prompt": f"q{i}", "completion": "x" * (i % 11) + f"row{i}", "solution": str(i)} for i in range(150)]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    args = [str(data), "--reward", "slow.length=2", "--reward", "format.boxed", "--batch-size", "4"]

    full = tmp_path / "full.jsonl"
    proc = cli(slow_plugin, tmp_path / "full.log", *args, "-o", str(full))
    assert proc.wait(timeout=300) == 0, proc.stderr.read()

    out = tmp_path / "out.jsonl"
    out.write_text("results of an older run\n")
    partial = Path(str(out) + ".partial")
    log = tmp_path / "killed.log"
    proc = cli(slow_plugin, log, *args, "-o", str(out))
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if partial.exists() and partial.read_text().count("\n") >= 40:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert out.read_text() == "results of an older run\n"  # the old output survives the kill
    kept = partial.read_text().count("\n")
    assert 40 <= kept < 150
    with open(partial, "a") as fh:  # a line cut short by a kill is dropped, not read as a row
        fh.write('{"index": 999, "slow.len')
    scored_before = log.read_text().count("\n")

    proc = cli(slow_plugin, log, *args, "-o", str(out), "--resume")
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert "150 samples" in proc.stderr.read()
    assert not partial.exists() and not Path(str(out) + ".partial.json").exists()
    assert out.read_bytes() == full.read_bytes()  # every row exactly once, as if never killed
    assert [r["index"] for r in read_jsonl(out)] == list(range(150))
    rescored = log.read_text().count("\n") - scored_before
    assert rescored == 150 - kept  # the resumed run scored only the missing rows


def test_async_reward_errors_are_attributed_to_their_rows(tmp_path, temp_plugin, capsys):
    from rewardkit import AsyncReward, hookimpl

    class Picky(AsyncReward):
        async def ascore_batch(self, batch):
            if any("bad" in t for t in batch.texts):
                raise ValueError("cannot score 'bad'")
            return [float(len(t)) for t in batch.texts]

    class Plugin:
        @hookimpl
        def rewardkit_register_rewards(self, register):
            register("picky.len", Picky, kind="outcome")

    temp_plugin(Plugin(), "picky")
    data = write_jsonl(tmp_path / "d.jsonl", [{"completion": c} for c in ["ab", "bad", "abcd", "x"]])
    out = tmp_path / "s.jsonl"
    assert score(str(data), "--reward", "picky.len", "-o", str(out), "--on-error", "none") == 0
    got = read_jsonl(out)
    assert [r["picky.len"] for r in got] == [2.0, None, 4.0, 1.0]
    assert [r["errors"] for r in got] == [{}, {"picky.len": "ValueError: cannot score 'bad'"}, {}, {}]
    assert score(str(data), "--reward", "picky.len", "-o", str(out)) == 1
    assert "reward 'picky.len' failed on row 1: ValueError: cannot score 'bad'" in capsys.readouterr().err
