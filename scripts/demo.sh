#!/usr/bin/env bash
# Set up a fresh environment and run the main job: GRPO with composed rewards on the embedded tiny model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
accelerate launch --config_file examples/configs/accelerate/single_cpu.yaml \
    examples/grpo_compose.py --config examples/configs/grpo_compose.yaml "$@"
