#!/usr/bin/env bash
# The images' install path without Docker: each role installed by install.sh into a fresh
# virtual environment, then its import check and `ftserve --help` (install.sh runs both). Each
# role goes through both stages the images use (dependencies from pyproject.toml, then source).
# The API role is installed again with Python 3.12 (vLLM's images ship 3.12) when this machine
# has one (FTSERVE_CHECK_PYTHON312, python3.12 on the PATH, or a pyenv 3.12).
#   bash deploy/docker/check-install.sh [WORK_DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="${1:-$root/.cache/role-venvs}"

install_role() {  # PYTHON ROLE VENV
  rm -rf "${3:?}"
  "$1" -m venv "$3"
  (
    # shellcheck disable=SC1091
    source "$3/bin/activate"
    bash "$root/deploy/docker/install.sh" "$2" "$root" deps
    bash "$root/deploy/docker/install.sh" "$2" "$root"
  )
}

for role in api trainer inference; do
  echo "== role: $role ($(python3 --version))"
  install_role python3 "$role" "$work/$role"
done

py312="${FTSERVE_CHECK_PYTHON312:-}"
for candidate in "$py312" python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12; do
  if [ -n "$candidate" ] && "$candidate" --version >/dev/null 2>&1; then py312="$candidate"; break; fi
  py312=""
done
if [ -n "$py312" ]; then
  echo "== role: api ($("$py312" --version))"
  install_role "$py312" api "$work/api-py312"
else
  echo "== no Python 3.12 here: the 3.12 install is not checked"
fi
