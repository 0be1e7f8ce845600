#!/usr/bin/env bash
# The images' install path without Docker: each role installed by install.sh into a fresh
# virtual environment, then its import check and `ftserve --help` (install.sh runs both).
#   bash deploy/docker/check-install.sh [WORK_DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="${1:-$root/.cache/role-venvs}"
for role in api trainer inference; do
  echo "== role: $role"
  rm -rf "${work:?}/$role"
  python3 -m venv "$work/$role"
  (
    # shellcheck disable=SC1091
    source "$work/$role/bin/activate"
    bash "$root/deploy/docker/install.sh" "$role" "$root"
  )
done
