"""rewardkit: reward plugins from RL post-training papers, composed onto TRL trainers."""

from __future__ import annotations

from importlib.metadata import version as _version

__version__ = _version("rewardkit")  # the version lives in pyproject.toml alone

from rewardkit.answer_check import last_boxed
from rewardkit.compose import RewardSet, compose, compose_from_yaml
from rewardkit.hookspecs import hookimpl
from rewardkit.lazy import lazy_exports
from rewardkit.plugins import get_hook, get_reward, list_hooks, list_plugins, list_rewards
from rewardkit.reward import (
    STEP_SCORES,
    AsyncReward,
    Batch,
    CallRecord,
    FunctionReward,
    ProcessReward,
    Reward,
    RewardInputError,
    Sample,
    StepScores,
    completion_text,
    message_text,
)
from rewardkit.trajectory import (
    Splitter,
    Step,
    split_steps,
    split_thinking,
    step_token_ends,
    strip_span,
    token_char_ends,
)

# imported on first use (``import rewardkit`` stays light: no torch, no HTTP stack)
_LAZY = {
    **dict.fromkeys(("TextModel", "HFTextModel", "OpenAITextModel", "CallableTextModel", "TextModelError",
                     "TextModelTimeout", "TextModelServer", "text_model", "as_messages"), "rewardkit.textgen"),
    **dict.fromkeys(("request_json", "RetryPolicy", "HTTPError", "HTTPTimeout"), "rewardkit.http"),
    **dict.fromkeys(("PRMTrainer", "PRMTrainingConfig", "train_prm"), "rewardkit.prm.training"),
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    *sorted(_LAZY),
    "STEP_SCORES",
    "AsyncReward",
    "Batch",
    "CallRecord",
    "FunctionReward",
    "ProcessReward",
    "Reward",
    "RewardInputError",
    "RewardSet",
    "Sample",
    "Splitter",
    "Step",
    "StepScores",
    "__version__",
    "completion_text",
    "compose",
    "compose_from_yaml",
    "get_hook",
    "get_reward",
    "hookimpl",
    "lazy_exports",
    "last_boxed",
    "list_hooks",
    "list_plugins",
    "list_rewards",
    "message_text",
    "split_steps",
    "split_thinking",
    "step_token_ends",
    "strip_span",
    "token_char_ends",
]
