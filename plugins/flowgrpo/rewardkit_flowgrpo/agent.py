"""The AgentFlow agentic system: a trained planner and frozen executor, verifier and generator.

One rollout (paper §3.1, released ``solver.py``)::

    memory = {}                                  # structured, re-rendered into every planner prompt
    for t in range(max_turns):
        a_t   = planner(query, tools, memory)    # the ONLY trained call: one training sample per turn
        cmd   = executor(query, a_t, memory)     # frozen
        e_t   = tools[a_t.tool](cmd)             # tool registry, with a timeout
        memory.add(a_t, cmd, e_t)
        if verifier(query, memory): break        # frozen, STOP / CONTINUE
    answer = generator(query, memory)            # frozen

Every planner turn keeps the prompt ids it was given, the completion ids the sampler produced (never
re-tokenised text) and the sampler's per-token log-probs when the backend returns them; the samplers
(planner backends) are in :mod:`rewardkit_flowgrpo.planners`.

Frozen modules are a :class:`~rewardkit_flowgrpo.modules.Module` (transformers model, OpenAI-compatible
endpoint, Python function; the ``LLM*`` role classes give them AgentFlow-style prompts) or a plain
Python callable with the role's signature:

* executor ``(query, action, memory, tools) -> command``
* verifier ``(query, memory) -> bool`` (True = STOP)
* generator ``(query, memory) -> answer``
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from rewardkit_flowgrpo.modules import Module
from rewardkit_flowgrpo.planners import Planner
from rewardkit_flowgrpo.tools import ToolRegistry, ToolResult


# -- memory ----------------------------------------------------------------------------------
@dataclass
class MemoryEntry:
    tool: str | None
    sub_goal: str
    command: str
    result: str
    ok: bool = True


@dataclass
class Memory:
    """AgentFlow's structured memory: one "Action Step k" record per turn (not a chat history)."""

    entries: list[MemoryEntry] = field(default_factory=list)

    def add(self, entry: MemoryEntry) -> None:
        self.entries.append(entry)

    def __len__(self) -> int:
        return len(self.entries)

    def render(self, style: str = "compact") -> str:
        if not self.entries:
            return "(empty)"
        lines = []
        for k, e in enumerate(self.entries, 1):
            if style == "compact":
                lines.append(f"Step {k}: {e.tool or 'none'}({e.command}) -> {e.result}")
            else:
                lines.append(f"Action Step {k}:\n  Tool: {e.tool}\n  Sub-Goal: {e.sub_goal}\n"
                             f"  Command: {e.command}\n  Result: {e.result}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {f"Action Step {k}": {"tool_name": e.tool, "sub_goal": e.sub_goal, "command": e.command,
                                     "result": e.result} for k, e in enumerate(self.entries, 1)}


# -- planner output --------------------------------------------------------------------------
@dataclass
class PlannerAction:
    tool: str | None
    sub_goal: str = ""
    context: str = ""
    text: str = ""


_FIELD = r"(?im)^\s*{name}\s*:\s*(.*)$"


def parse_action(text: str, tool_names: Sequence[str]) -> PlannerAction:
    """Parse ``Tool Name:`` / ``Tool:``, ``Sub-Goal:`` and ``Context:`` lines (AgentFlow's regexes);
    when no tool line names a registered tool, fall back to the first registered name in the text."""
    def field_(name: str) -> str:
        m = re.search(_FIELD.format(name=name), text)
        return m.group(1).strip() if m else ""

    tool = None
    raw = field_(r"tool[ _-]?name") or field_("tool")
    if raw:
        for name in tool_names:
            if re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", raw, re.I):
                tool = name
                break
    if tool is None:
        hits = [(m.start(), name) for name in tool_names
                for m in [re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text, re.I)] if m]
        if hits:
            tool = min(hits)[1]
    return PlannerAction(tool, field_(r"sub[ _-]?goal"), field_("context"), text)


# -- frozen roles backed by a Module ---------------------------------------------------------
class LLMExecutor:
    """Executor that asks a module to write the tool command (AgentFlow's executor step)."""

    def __init__(self, module: Module, template: str | None = None) -> None:
        self.module = module
        self.template = template or (
            "Task: {query}\nSub-goal: {sub_goal}\nTool: {tool} ({description})\nMemory:\n{memory}\n"
            "Write the input for the tool on one line starting with 'Command:'.")

    def __call__(self, query: str, action: PlannerAction, memory: Memory, tools: ToolRegistry) -> str:
        desc = tools[action.tool].description if action.tool in tools else ""
        out = self.module([{"role": "user", "content": self.template.format(
            query=query, sub_goal=action.sub_goal, tool=action.tool, description=desc, memory=memory.render())}])
        m = re.findall(r"(?im)^\s*command\s*:\s*(.*)$", out)
        return (m[-1] if m else out).strip()


class LLMVerifier:
    """Verifier that asks a module for STOP / CONTINUE; the last keyword wins, none means CONTINUE."""

    def __init__(self, module: Module, template: str | None = None) -> None:
        self.module = module
        self.template = template or (
            "Task: {query}\nMemory:\n{memory}\nIs the memory enough to answer the task? "
            "End with 'Conclusion: STOP' or 'Conclusion: CONTINUE'.")

    def __call__(self, query: str, memory: Memory) -> bool:
        out = self.module([{"role": "user", "content": self.template.format(query=query, memory=memory.render())}])
        words = re.findall(r"\b(STOP|CONTINUE)\b", out.upper())
        return bool(words) and words[-1] == "STOP"


def extract_answer(text: str | None, official: bool = False) -> str:
    """The last ``<answer>...</answer>``, stripped; the whole text when there is none (AgentFlow ``rollout.py``).

    Default: the untagged fallback is stripped too, and an empty or missing output stays ``""``.
    ``official=True`` is the released code exactly: the untagged fallback is returned unstripped, and an
    empty or missing output becomes the string ``"None"``, which is then sent to the judge.
    """
    if official and not text:
        return "None"
    text = text or ""
    found = re.findall(r"<answer>(.*?)</answer>", text, re.S)
    if found:
        return found[-1].strip()
    return text if official else text.strip()


class LLMGenerator:
    """Generator that asks a module for the final answer wrapped in ``<answer></answer>``.

    ``official_answer=True`` extracts the answer exactly as AgentFlow does (see :func:`extract_answer`).
    """

    def __init__(self, module: Module, template: str | None = None, official_answer: bool = False) -> None:
        self.module = module
        self.official_answer = official_answer
        self.template = template or (
            "Task: {query}\nMemory:\n{memory}\nAnswer the task. Wrap the final answer in <answer></answer>.")

    def __call__(self, query: str, memory: Memory) -> str:
        out = self.module([{"role": "user", "content": self.template.format(query=query, memory=memory.render())}])
        return extract_answer(out, official=self.official_answer)


def _role(x: Any, llm_cls: type) -> Callable[..., Any]:
    if isinstance(x, Module):
        return llm_cls(x)
    if callable(x):
        return x
    raise TypeError(f"a frozen module must be a rewardkit_flowgrpo Module or a callable, got {x!r}")


# -- trajectories ----------------------------------------------------------------------------
@dataclass
class Turn:
    index: int
    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float] | None
    text: str
    action: PlannerAction
    command: str = ""
    result: ToolResult | None = None


@dataclass
class Trajectory:
    query_id: int
    traj_id: int
    query: str
    turns: list[Turn] = field(default_factory=list)
    memory: Memory = field(default_factory=Memory)
    answer: str = ""
    error: str | None = None      # a tool or module failure that ended the trajectory
    timed_out: bool = False
    stopped: bool = False          # the verifier said STOP (otherwise max_turns or an error ended it)
    analysis: str = ""

    @property
    def num_turns(self) -> int:
        return len(self.turns)


DEFAULT_PLANNER_TEMPLATE = (
    "Query: {query}\n{analysis}Tools: {tool_names}\nMemory:\n{memory}\n"
    "Next step? Reply 'Tool: <name>'.")


class AgentSystem:
    """Planner + frozen executor/verifier/generator over a tool registry, batched across trajectories.

    Args:
        tokenizer: the planner's tokenizer (renders planner prompts with its chat template).
        tools: the :class:`ToolRegistry`.
        executor, verifier, generator: frozen modules (see the module docstring).
        max_turns: T_max (AgentFlow trains with 3).
        analyzer: optional frozen module run once per query (AgentFlow's ``analyze_query``).
        on_tool_error: ``"end"`` ends the trajectory with the error (reward 0, counted);
            ``"continue"`` writes the error into memory as the tool result (AgentFlow's code).
        planner_template: the planner prompt; fields ``query, analysis, tool_names, tools, memory, turn``.
        system_prompt: optional system message of the planner prompt.
        workers: threads for the frozen-module calls of one turn (HTTP backends benefit).
    """

    def __init__(self, tokenizer: Any, tools: ToolRegistry, executor: Any, verifier: Any, generator: Any, *,
                 max_turns: int = 3, analyzer: Any = None, on_tool_error: str = "end",
                 planner_template: str = DEFAULT_PLANNER_TEMPLATE, system_prompt: str | None = None,
                 memory_style: str = "compact", workers: int = 1) -> None:
        if max_turns < 1:
            raise ValueError("max_turns must be >= 1")
        if on_tool_error not in ("end", "continue"):
            raise ValueError("on_tool_error must be 'end' or 'continue'")
        self.tokenizer = tokenizer
        self.tools = tools
        self.executor = _role(executor, LLMExecutor)
        self.verifier = _role(verifier, LLMVerifier)
        self.generator = _role(generator, LLMGenerator)
        self.analyzer = analyzer
        self.max_turns = max_turns
        self.on_tool_error = on_tool_error
        self.planner_template = planner_template
        self.system_prompt = system_prompt
        self.memory_style = memory_style
        self.workers = workers

    # -- planner prompt ---------------------------------------------------------------------
    def planner_messages(self, traj: Trajectory) -> list[dict[str, str]]:
        content = self.planner_template.format(
            query=traj.query, analysis=f"Analysis: {traj.analysis}\n" if traj.analysis else "",
            tool_names=", ".join(self.tools.names), tools=self.tools.describe(),
            memory=traj.memory.render(self.memory_style), turn=traj.num_turns + 1)
        msgs = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return msgs + [{"role": "user", "content": content}]

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = "\n".join(m["content"] for m in messages) + "\n"
        return list(tok(text, add_special_tokens=False)["input_ids"])

    # -- the loop ---------------------------------------------------------------------------
    def _map(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        if self.workers > 1 and len(items) > 1:
            with ThreadPoolExecutor(self.workers) as pool:
                return list(pool.map(fn, items))
        return [fn(x) for x in items]

    def _fail(self, traj: Trajectory, where: str, exc: BaseException | str, timed_out: bool = False) -> None:
        traj.error = f"{where}: {exc if isinstance(exc, str) else f'{type(exc).__name__}: {exc}'}"
        traj.timed_out = traj.timed_out or timed_out

    def _act(self, traj: Trajectory) -> None:
        """Executor + tool + memory + verifier for the trajectory's last planner turn."""
        turn = traj.turns[-1]
        action = turn.action
        if action.tool is None or action.tool not in self.tools:
            # AgentFlow: an unknown tool makes the turn a no-op; it is still a training sample
            name = action.tool or "none"
            traj.memory.add(MemoryEntry(action.tool, action.sub_goal, "", f"tool {name!r} not found", ok=False))
        else:
            try:
                turn.command = str(self.executor(traj.query, action, traj.memory, self.tools))
            except Exception as exc:
                self._fail(traj, "executor", exc)
                return
            turn.result = self.tools.call(action.tool, turn.command)
            res = turn.result
            if not res.ok and self.on_tool_error == "end":
                self._fail(traj, f"tool {action.tool}", res.error or "failed", timed_out=res.timed_out)
                return
            traj.memory.add(MemoryEntry(action.tool, action.sub_goal, turn.command,
                                        res.output if res.ok else f"Error: {res.error}", ok=res.ok))
        try:
            traj.stopped = bool(self.verifier(traj.query, traj.memory))
        except Exception as exc:
            self._fail(traj, "verifier", exc)

    def _answer(self, traj: Trajectory) -> None:
        if traj.error is not None:
            return
        try:
            traj.answer = str(self.generator(traj.query, traj.memory))
        except Exception as exc:
            self._fail(traj, "generator", exc)

    def _analyse(self, traj: Trajectory) -> None:
        if self.analyzer is None:
            return
        try:
            fn = self.analyzer
            traj.analysis = fn([{"role": "user", "content": f"Analyse this query briefly: {traj.query}"}]) \
                if isinstance(fn, Module) else str(fn(traj.query))
        except Exception as exc:
            self._fail(traj, "analyzer", exc)

    def run(self, queries: Sequence[str], planner: Planner, group_size: int = 1, *,
            first_query_id: int = 0) -> list[Trajectory]:
        """Run ``group_size`` trajectories for every query; planner calls are batched per turn."""
        trajs = [Trajectory(first_query_id + q, (first_query_id + q) * group_size + g, query)
                 for q, query in enumerate(queries) for g in range(group_size)]
        self._map(self._analyse, trajs)
        names = self.tools.names
        for t in range(self.max_turns):
            active = [tr for tr in trajs if tr.error is None and not tr.stopped]
            if not planner.keep_going(len(active)):
                break
            prompts = [self.encode(self.planner_messages(tr)) for tr in active]
            completion_ids, logprobs = planner.generate(prompts)
            if len(completion_ids) != len(active):
                raise RuntimeError(f"planner returned {len(completion_ids)} completions for {len(active)} prompts")
            for i, tr in enumerate(active):
                ids = list(completion_ids[i])
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                lp = None if logprobs is None else list(logprobs[i])
                tr.turns.append(Turn(t, prompts[i], ids, lp, text, parse_action(text, names)))
            self._map(self._act, active)
        self._map(self._answer, trajs)
        return trajs
