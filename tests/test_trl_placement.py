"""check_world_size: a launcher's N lone processes are an error, not N silent duplicate runs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from rewardkit.trl import LaunchError, check_world_size


def test_lone_processes_under_a_multi_process_launch_raise(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(LaunchError, match="use_cpu=True"):
        check_world_size(SimpleNamespace(world_size=1))  # what TrainingArguments says without use_cpu
    assert check_world_size(SimpleNamespace(world_size=2)) == 2
    trainer = SimpleNamespace(accelerator=SimpleNamespace(num_processes=2), args=SimpleNamespace(world_size=2))
    assert check_world_size(trainer) == 2


def test_single_process_runs_pass(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert check_world_size(SimpleNamespace(world_size=1)) == 1
