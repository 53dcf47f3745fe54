"""Flow-GRPO (AgentFlow, arXiv 2510.05592) for rewardkit: multi-turn planner training on TRL.

A trained planner and frozen executor / verifier / generator share a structured memory; each planner
turn is one training sample; the trajectory's final-answer reward is broadcast to every turn and
normalised over the G trajectories of a query. See docs/methods/flowgrpo.md.
"""

from rewardkit_flowgrpo.advantages import AdvantageResult, broadcast, flow_advantages, trajectory_rewards
from rewardkit_flowgrpo.agent import (
    AgentSystem,
    FunctionPlanner,
    HFPlanner,
    LLMExecutor,
    LLMGenerator,
    LLMVerifier,
    Memory,
    MemoryEntry,
    PlannerAction,
    Trajectory,
    Turn,
    extract_answer,
    parse_action,
)
from rewardkit_flowgrpo.modules import HFModule, Module, ModuleError, OpenAIModule, PythonModule
from rewardkit_flowgrpo.reward import FlowOutcome, LLMJudge, exact_judge, normalise_answer
from rewardkit_flowgrpo.rollout import FlowRollout, trajectories_to_rows
from rewardkit_flowgrpo.tools import (
    DocumentStore,
    Tool,
    ToolRegistry,
    ToolResult,
    calculator,
    default_registry,
)

__all__ = [
    "AdvantageResult", "AgentSystem", "DocumentStore", "FlowBroadcastHook", "FlowOutcome", "FlowRollout",
    "FunctionPlanner", "HFModule", "HFPlanner", "LLMExecutor", "LLMGenerator", "LLMJudge", "LLMVerifier", "Memory",
    "MemoryEntry", "Module", "ModuleError", "OpenAIModule", "PlannerAction", "PythonModule", "TRLPlanner", "Tool",
    "ToolRegistry", "ToolResult", "Trajectory", "Turn", "broadcast", "calculator", "default_registry",
    "exact_judge", "extract_answer", "flow_advantages", "flowgrpo_grpo_kwargs", "normalise_answer", "parse_action",
    "trajectories_to_rows", "trajectory_rewards",
]


def __getattr__(name):  # the trainer module imports rewardkit.trl (transformers); load it on demand
    if name in ("FlowBroadcastHook", "TRLPlanner", "flowgrpo_grpo_kwargs", "check_flowgrpo_compat"):
        from rewardkit_flowgrpo import trainer

        return getattr(trainer, name)
    raise AttributeError(name)
