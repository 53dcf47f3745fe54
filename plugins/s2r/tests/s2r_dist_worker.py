"""Run under torchrun (2 processes): each rank scores different trajectories; the hook's gathered
baseline table must be identical on every rank. Writes <out>/rank<k>.json."""

import json
import sys
from types import SimpleNamespace

from _s2r_group import C, W
from accelerate import Accelerator
from rewardkit_s2r.hooks import S2RProcessAdvantageHook
from rewardkit_s2r.parse import format_trajectory
from rewardkit_s2r.rewards import SCORED

from rewardkit import get_reward
from rewardkit.trl import end_run

acc = Accelerator(cpu=True)
rank = acc.process_index

texts = ([format_trajectory(["\\boxed{14}"], [C]), format_trajectory(["\\boxed{1}", "\\boxed{14}"], [W, C])]
         if rank == 0 else [format_trajectory(["\\boxed{2}"], [C]), format_trajectory(["\\boxed{3}"], [W])])
reward = get_reward("s2r.process")
reward(prompts=["p"] * 2, completions=texts, solution=["14"] * 2)
hook = S2RProcessAdvantageHook(baseline="group")
trainer = SimpleNamespace(accelerator=acc)
details = reward.last_call.detail(SCORED)
pairs = hook._gather(trainer, [(c, r) for d in details for c, r in zip(d.contexts, d.rewards)])
baselines = hook.baselines(pairs)
adv = hook.compute(details, pairs)
with open(f"{sys.argv[1]}/rank{rank}.json", "w") as fh:
    json.dump({"sums": hook.table.sums, "counts": hook.table.counts, "adv": adv,
               "baselines": baselines, "world": acc.num_processes}, fh)
end_run(acc)
