"""The rewardkit command, run as a real subprocess on real files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def run(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "rewardkit.cli", *args], capture_output=True, text=True,
                          timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}")
    return proc


def test_help_lists_core_and_plugin_commands():
    out = run("--help").stdout
    for word in ("plugins", "score", "examples:"):
        assert word in out


def test_plugins_lists_rewards_hooks_and_versions():
    out = run("plugins", "--json", check=False)
    infos = {p["name"]: p for p in json.loads(out.stdout)}
    assert "math.accuracy" in infos["rewardkit.builtin_rewards"]["rewards"]
    assert infos["example"]["version"] == "0.1.0"
    table = run("plugins", check=False).stdout
    assert "example.rollout_counter" in table and "format.boxed" in table


def test_score_writes_per_sample_per_component_scores(tmp_path):
    data = tmp_path / "data.jsonl"
    rows = [{"prompt": "1+1?", "completion": "\\boxed{2}", "solution": "2"},
            {"prompt": "2+2?", "completion": "five", "solution": "4"},
            {"prompt": "3+3?", "completion": "\\boxed{6}", "solution": None}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "scores.jsonl"
    proc = run("score", str(data), "--reward", "math.accuracy=1", "--reward", "format.boxed=0.5", "-o", str(out))
    scores = [json.loads(line) for line in out.read_text().splitlines()]
    assert [s["math.accuracy"] for s in scores] == [1.0, 0.0, None]
    assert [s["format.boxed"] for s in scores] == [1.0, 0.0, 1.0]
    assert [s["total"] for s in scores] == [1.5, 0.0, 0.5]
    assert "3 samples" in proc.stderr and "math.accuracy" in proc.stderr


def test_score_with_a_yaml_spec_and_a_wrong_column(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "p", "response": "\\boxed{1}"}) + "\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text("rewards:\n  format.boxed:\n    weight: 2.0\n")
    proc = run("score", str(data), "--spec", str(spec), "--completion-column", "response")
    assert json.loads(proc.stdout.splitlines()[0])["total"] == 2.0
    bad = run("score", str(data), "--spec", str(spec), check=False)
    assert bad.returncode != 0 and "no column 'completion'" in bad.stderr


@pytest.mark.parametrize("args,message", [(["score", "x.jsonl"], "at least one --reward"),
                                          (["score", "x.jsonl", "--reward", "a=b"], "NAME=WEIGHT")])
def test_score_argument_errors(args, message):
    proc = run(*args, check=False)
    assert proc.returncode != 0 and message in proc.stderr
