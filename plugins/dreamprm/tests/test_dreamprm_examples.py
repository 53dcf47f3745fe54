"""The DreamPRM examples: TRL-style arguments (YAML via --config, flags override, 1.5's preset under
the file's values), and the smoke configuration run end to end, then Best-of-N on what it wrote."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = ROOT / "examples" / "configs"
sys.path.insert(0, str(ROOT / "examples"))

import dreamprm_bilevel  # noqa: E402
import dreamprm_bon  # noqa: E402


@pytest.mark.parametrize("name", ["dreamprm_bilevel", "dreamprm_bilevel_flip40", "dreamprm_bilevel_smoke",
                                  "dreamprm_bilevel_twin"])
def test_every_config_parses_into_the_script_arguments_and_a_dreamprm_config(name):
    args, config = dreamprm_bilevel.parse(["--config", str(CONFIGS / f"{name}.yaml")])
    assert config.variant == "v1" and config.lr == 1e-3 and config.output_dir.startswith("runs/")
    assert args.model == "tiny" and args.toy["n_candidates"] in (4, 8) and args.seeds


def test_flags_override_the_file_and_15_fills_only_what_the_file_leaves_unset():
    from rewardkit_dreamprm import DreamPRMConfig

    argv = ["--config", str(CONFIGS / "dreamprm_bilevel_smoke.yaml"), "--max-steps", "3", "--seeds", "0", "1",
            "--toy", "{n_meta: 3}"]
    args, config = dreamprm_bilevel.parse(argv)
    assert (config.max_steps, args.seeds, args.toy) == (3, [0, 1], {"n_meta": 3})
    _, v15 = dreamprm_bilevel.parse([*argv, "--variant", "1.5"])
    preset = DreamPRMConfig.v15()
    assert (v15.lr, v15.weighting, v15.batch_size) == (1e-3, "domain", 4)  # from the file
    assert (v15.weight_decay, v15.meta_lr_scheduler, v15.max_grad_norm) == (preset.weight_decay, "cosine", 1.0)


def test_a_misspelt_key_is_an_error(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text((CONFIGS / "dreamprm_bilevel_smoke.yaml").read_text() + "meta_lrr: 0.1\n")
    with pytest.raises(ValueError, match="meta_lrr"):
        dreamprm_bilevel.parse(["--config", str(cfg)])


def test_smoke_run_then_best_of_n_on_its_pool(tmp_path):
    out = tmp_path / "run"
    args, config = dreamprm_bilevel.parse(["--config", str(CONFIGS / "dreamprm_bilevel_smoke.yaml"),
                                           "--output_dir", str(out), "--compare_uniform", "true"])
    summary = dreamprm_bilevel.main(args, config)
    assert summary == json.loads((out / "summary.json").read_text())
    runs = {r["run"]: r for r in summary["runs"]}
    assert set(runs) == {"domain_s0", "none_s0"} and summary["corrupted"] == ["mix"]
    assert any(abs(w - 1) > 1e-4 for w in runs["domain_s0"]["weights"].values())
    assert set(runs["none_s0"]["weights"].values()) == {1.0}
    assert (out / "domain_weights.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "domain_s0" / "checkpoint-4" / "dreamprm_state.json").exists()
    assert len((out / "eval.jsonl").read_text().splitlines()) == 8
    report = dreamprm_bon.main(dreamprm_bon.BonArguments(data=str(out / "eval.jsonl"),
                                                         prm=[str(out / "prm_domain_s0"), str(out / "prm_none_s0")],
                                                         output=str(out / "bon.json")))
    assert report == json.loads((out / "bon.json").read_text())
    # the saved PRMs pick the same candidates from the written pool as the trained ones did in the run
    for name in ("domain_s0", "none_s0"):
        assert report[str(out / f"prm_{name}")]["accuracy"] == runs[name]["bon_accuracy"]
