#!/usr/bin/env bash
# Runs tools/compare.py (tfgrad against stock tf.gradients on real models)
# after making sure the venv is ready. Arguments go to compare.py; `--help`
# lists its flags.
#
#   bash tools/run_compare.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash tools/setup_env.sh
exec "${TFGRAD_VENV:-$root/.venv}/bin/python" tools/compare.py "$@"
