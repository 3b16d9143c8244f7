#!/usr/bin/env bash
# Runs the compatibility suite (compat_tests/) on two workers, after making
# sure the venv is ready. Extra arguments go to pytest, e.g.
#
#   bash tools/run_tests.sh                                   # whole suite
#   bash tools/run_tests.sh -k Conv2D                         # a subset
#   bash tools/run_tests.sh compat_tests/test_nn_grad.py -n 0 # one file, one process
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash tools/setup_env.sh
# Without a path argument pytest takes `testpaths` (compat_tests) from pytest.ini.
exec "${TFGRAD_VENV:-$root/.venv}/bin/python" -m pytest -n 2 -q "$@"
