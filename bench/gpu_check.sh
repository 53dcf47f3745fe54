#!/usr/bin/env bash
# The GPU check: one script, no network, under 8 minutes on one GPU. Writes one JSON of figures.
#
#   bash bench/gpu_check.sh [OUT.json]            # default: runs/gpu_check.json (or $OUT/gpu_check.json)
#   GPU_CHECK_DEVICE=cpu bash bench/gpu_check.sh  # the same steps at tiny sizes on a CPU (checks the script)
#
# 1. GRPO step time on SmolLM2-135M-Instruct: composed rewardkit rewards vs a plain TRL reward function
# 2. PRM scoring throughput: tagged (one forward per trajectory) vs per-prefix, 16 steps per trajectory
# 3. the main job under DeepSpeed ZeRO-3 on one GPU (short settings): wall time and final reward
# Peak GPU memory is recorded for 1 and 2. Run scripts/setup_env.sh first (it installs everything).
set -uo pipefail
cd "$(dirname "$0")/.."
[ -f .venv/bin/activate ] && . .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false TRL_EXPERIMENTAL_SILENCE=1
OUT_JSON="${1:-${OUT:+$OUT/gpu_check.json}}"
OUT_JSON="${OUT_JSON:-runs/gpu_check.json}"
WORK="$(mktemp -d)"
mkdir -p "$(dirname "$OUT_JSON")"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
if [ "$DEVICE" = cpu ]; then
    GRPO_ARGS=(--device cpu --tiny --steps 2 --rounds 1 --batch 8 --length 16)
    PRM_ARGS=(--device cpu --trajectories 16 --batch 8 --repeats 1)
    LAUNCH=(--config_file examples/configs/accelerate/single_cpu.yaml)
    JOB_ARGS=(--max_steps 2 --n_train 32 --warmstart_steps 2 --prm_train_epochs 1 --per_device_train_batch_size 8 --num_generations 4)
else
    GRPO_ARGS=(--steps 6 --rounds 2)
    PRM_ARGS=()
    LAUNCH=(--config_file examples/configs/accelerate/zero3.yaml --num_processes 1)
    JOB_ARGS=(--max_steps 20 --n_train 128)
fi

step() {  # step NAME TIMEOUT CMD...: run one measurement; its JSON (or its error) goes to $WORK/NAME.json
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    if timeout "$limit" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err"; then
        tail -n 1 "$WORK/$name.out" > "$WORK/$name.json"
    else
        local rc=$?
        python -c 'import json,sys; print(json.dumps({"error": f"exit {sys.argv[1]}", "stderr_tail": open(sys.argv[2]).read()[-2000:]}))' \
            "$rc" "$WORK/$name.err" > "$WORK/$name.json"
    fi
    echo $((SECONDS - t0)) > "$WORK/$name.wall"
    echo "gpu_check: $name done in $((SECONDS - t0)) s" >&2
}

step grpo 240 python bench/gpu_check.py grpo "${GRPO_ARGS[@]}"
step prm 90 python bench/gpu_check.py prm "${PRM_ARGS[@]}"
step zero3_main_job 150 bash -c "accelerate launch ${LAUNCH[*]} examples/grpo_compose.py \
    --config examples/configs/grpo_compose.yaml --output_dir $WORK/main_job --disable_tqdm true ${JOB_ARGS[*]} \
    && cat $WORK/main_job/summary.json | python -c 'import json,sys; print(json.dumps(json.load(sys.stdin)))'"

python - "$WORK" "$OUT_JSON" <<'PY'
import json, platform, subprocess, sys
from pathlib import Path

work, out = Path(sys.argv[1]), Path(sys.argv[2])
result = {}
for name in ("grpo", "prm", "zero3_main_job"):
    result[name] = json.loads((work / f"{name}.json").read_text() or "{}")
    result[name]["wall_s"] = int((work / f"{name}.wall").read_text())
try:
    result["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                           "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
except FileNotFoundError:
    result["nvidia_smi"] = None
import torch, transformers, trl
result["versions"] = {"python": platform.python_version(), "torch": torch.__version__,
                      "transformers": transformers.__version__, "trl": trl.__version__}
out.write_text(json.dumps(result, indent=2))
print(json.dumps(result, indent=2))
PY
rm -rf "$WORK"
