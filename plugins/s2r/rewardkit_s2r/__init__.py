"""S²R for rewardkit: self-verification and self-correction via SFT then RL (arXiv 2502.12853).

* :mod:`rewardkit_s2r.parse` — trajectory format, parser on text and token ids;
* :mod:`rewardkit_s2r.rewards` — ``s2r.outcome`` and ``s2r.process``;
* :mod:`rewardkit_s2r.code` — the released code's scoring (``mode="code"``);
* :mod:`rewardkit_s2r.advantage` — ``s2r.process_advantage`` and ``s2r.outcome_rloo`` trainer hooks;
* :mod:`rewardkit_s2r.sft` — the stage-1 SFT collator with the action mask;
* :mod:`rewardkit_s2r.stage0` — stage-0 data construction (``rewardkit s2r-data``);
* :mod:`rewardkit_s2r.backends` — local-model and OpenAI-compatible generation backends.
"""

from rewardkit_s2r.advantage import BaselineTable, S2ROutcomeRLOO, S2RProcessAdvantage
from rewardkit_s2r.configs import (
    CODE_OUTCOME_REWARD,
    CODE_PROCESS_HOOK,
    CODE_PROCESS_REWARD,
    PAPER_GRPO_OUTCOME,
    PAPER_GRPO_PROCESS,
    PAPER_RLOO_OUTCOME,
)
from rewardkit_s2r.parse import (
    Action,
    Markers,
    S2RTrajectory,
    format_trajectory,
    parse,
    parse_verdict,
    split_token_ids,
)
from rewardkit_s2r.rewards import (
    S2ROutcome,
    S2RProcess,
    ScoredTrajectory,
    score_trajectory,
    trajectory_metrics,
)
from rewardkit_s2r.sft import S2RSFTCollator, s2r_token_mask

__all__ = [
    "CODE_OUTCOME_REWARD", "CODE_PROCESS_HOOK", "CODE_PROCESS_REWARD", "PAPER_GRPO_OUTCOME", "PAPER_GRPO_PROCESS", "PAPER_RLOO_OUTCOME",
    "Action", "BaselineTable", "Markers", "S2ROutcome", "S2ROutcomeRLOO", "S2RProcess", "S2RProcessAdvantage",
    "S2RSFTCollator", "S2RTrajectory", "ScoredTrajectory", "format_trajectory", "parse", "parse_verdict",
    "s2r_token_mask", "score_trajectory", "split_token_ids", "trajectory_metrics",
]
