"""Config loading and model choice shared by the example scripts."""

from pathlib import Path

import pytest
import yaml

from rewardkit.recipes import load_example_config


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"model": "tiny", "output_dir": "runs/x", "grpo": {"max_steps": 100, "beta": 0.0}}))
    return str(path)


def test_overrides_read_yaml_values_and_follow_sections(config):
    cfg = load_example_config(config, ["--model", "Qwen/Qwen2.5-0.5B", "--grpo.max-steps", "4", "--grpo.beta=0.04"])
    assert cfg["model"] == "Qwen/Qwen2.5-0.5B"
    assert cfg["grpo"] == {"max_steps": 4, "beta": 0.04}
    assert load_example_config("unused.yaml", ["--config", config])["grpo"]["max_steps"] == 100


def test_aliases_may_create_keys_and_a_bare_flag_is_true(config):
    cfg = load_example_config(config, ["--max-steps", "2", "--warmstart-steps", "0", "--images"],
                              aliases={"max_steps": "grpo.max_steps", "warmstart_steps": "warmstart.steps",
                                       "images": "data.images"})
    assert cfg["grpo"]["max_steps"] == 2 and cfg["warmstart"] == {"steps": 0} and cfg["data"] == {"images": True}


@pytest.mark.parametrize("argv, message", [
    (["--grpo.max_step", "4"], "no key 'max_step'"),
    (["--modle", "x"], "no key 'modle'"),
    (["--trainer.lr", "1"], "no section 'trainer'"),
    (["stray"], "unexpected argument"),
])
def test_a_typo_is_an_error_listing_the_keys(config, argv, message, capsys):
    with pytest.raises(SystemExit):
        load_example_config(config, argv)
    assert message in capsys.readouterr().err


def test_resolve_model_builds_the_tiny_model_and_passes_other_names_through(tmp_path):
    from accelerate import PartialState

    from rewardkit.recipes import resolve_model

    path, tiny = resolve_model("tiny", PartialState())
    assert tiny and (Path(path) / "config.json").exists()
    assert resolve_model(None)[1] is True
    assert resolve_model("Qwen/Qwen2.5-0.5B-Instruct") == ("Qwen/Qwen2.5-0.5B-Instruct", False)
    assert resolve_model(str(tmp_path)) == (str(tmp_path), False)
