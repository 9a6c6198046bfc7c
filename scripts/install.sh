#!/usr/bin/env bash
# Create .venv and install gear_sonic with everything it needs, from the package registries only.
#   bash scripts/install.sh          # runtime
#   bash scripts/install.sh --dev    # + test tools and test fixtures
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
# pip warns about an unused local index on these machines; hide only that line, keep pip's exit status.
pipq() { pip install -q "$@" 2> >(grep -v "is ignored" >&2); }
pipq --upgrade pip
# torch: keep a CUDA build if one is already there; otherwise take the CPU build (2.13.0 lies on these machines' disks).
if ! python -c "import torch" 2>/dev/null; then
  pipq "torch==2.13.0"
fi
# The G1 MJCF and meshes come from mjlab's wheel. Its own dependencies (rsl-rl-lib -> torchvision) would replace the CPU
# torch with a multi-GB CUDA build, and we only read its asset folder, so it is installed without them.
pipq --no-deps "mjlab==1.6.0"
if [ "$DEV" = 1 ]; then
  pipq -e ".[dev]"
else
  pipq -e .
fi
python -c "import torch, mujoco, gear_sonic.robots as r; r.g1_mjcf_path(); print(f'gear_sonic installed: torch {torch.__version__}, mujoco {mujoco.__version__}')"
