# Sourced by demo.sh and smoke_test.sh: run from the repo root, offline, with the repo's own ftcli.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
ftcli() { .venv/bin/ftcli "$@"; }
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
start=$(date +%s)
