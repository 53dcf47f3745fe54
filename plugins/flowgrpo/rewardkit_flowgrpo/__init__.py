"""Flow-GRPO (AgentFlow, arXiv 2510.05592) for rewardkit: multi-turn planner training on TRL.

A trained planner and frozen executor / verifier / generator share a structured memory; each planner
turn is one training sample; the trajectory's final-answer reward is broadcast to every turn and
normalised over the G trajectories of a query. See docs/methods/flowgrpo.md for the file layout.

Names load on first use, so importing the package (and listing plugins) imports no torch,
transformers or TRL.
"""

from __future__ import annotations

from rewardkit import lazy_exports

_LAZY = {
    # rewards.py, hooks.py, config.py
    "FlowOutcomeReward": "rewards", "FlowOutcome": "rewards",
    "FlowBroadcastHook": "hooks",
    "grpo_kwargs": "config", "flowgrpo_grpo_kwargs": "config",
    # the method's own modules
    "AdvantageResult": "advantages", "broadcast": "advantages", "flow_advantages": "advantages",
    "trajectory_rewards": "advantages",
    "AgentSystem": "agent", "LLMExecutor": "agent", "LLMGenerator": "agent", "LLMVerifier": "agent",
    "Memory": "agent", "MemoryEntry": "agent", "PlannerAction": "agent", "Trajectory": "agent", "Turn": "agent",
    "extract_answer": "agent", "parse_action": "agent",
    "Planner": "planners", "FunctionPlanner": "planners", "HFPlanner": "planners", "TRLPlanner": "planners",
    "FlowRollout": "rollout", "trajectories_to_rows": "rollout",
    "LLMJudge": "judges", "JudgeError": "judges", "exact_judge": "judges", "normalise_answer": "judges",
    "DocumentStore": "tools", "Tool": "tools", "ToolRegistry": "tools", "ToolResult": "tools",
    "calculator": "tools",
    "default_registry": "toy",
    "HFModule": "modules", "Module": "modules", "ModuleError": "modules", "OpenAIModule": "modules",
    "PythonModule": "modules",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_exports(__name__, {name: f"rewardkit_flowgrpo.{module}" for name, module in _LAZY.items()})
