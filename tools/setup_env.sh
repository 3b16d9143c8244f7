#!/usr/bin/env bash
# Creates or updates the checkout's virtualenv, `.venv`, with what the tests,
# the tools and `bazel test` need: TensorFlow, numpy, absl-py, pytest,
# pytest-xdist and matplotlib (tfgrad-bench --plot). tfgrad itself is not
# installed: pytest.ini puts the checkout on `sys.path`, so the tests always
# run the code in the working tree.
#
#   bash tools/setup_env.sh          # idempotent; well under a second once done
#
# Environment:
#   PYTHON              interpreter that creates the venv (default: python3)
#   TFGRAD_VENV         where the venv lives (default: <checkout>/.venv)
#   TFGRAD_TF_SPEC      pip requirement used when no TensorFlow distribution is
#                       installed in the venv (default: the CPU build of the
#                       version the suite is checked against)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${TFGRAD_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
vpy="$venv/bin/python"

if [ -z "${TFGRAD_TF_SPEC:-}" ]; then
  # tensorflow-cpu has wheels for x86_64 only; elsewhere the plain package is
  # the CPU build.
  case "$(uname -m)" in
    x86_64|amd64) TFGRAD_TF_SPEC="tensorflow-cpu==2.21.0" ;;
    *) TFGRAD_TF_SPEC="tensorflow==2.21.0" ;;
  esac
fi
requirements=(numpy absl-py pytest pytest-xdist setuptools matplotlib)
# Installed without dependencies: tf-keras (the Keras 2 LSTM/GRU cells the
# v1 dynamic_rnn tests use) requires the `tensorflow` distribution, which
# would land beside tensorflow-cpu.
no_deps=(tf-keras==2.21.0)
stamp="$venv/.tfgrad-stamp"
# The stamp records what was asked for; when this script's requirements change,
# the next run installs again.
want="$(printf '%s\n' "$TFGRAD_TF_SPEC" "${requirements[@]}" "${no_deps[@]}" | cksum | cut -d' ' -f1)"

if [ -x "$vpy" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
    && "$vpy" -c '' 2>/dev/null; then
  exit 0
fi

log() { echo "setup_env: $*"; }

if ! [ -x "$vpy" ] || ! "$vpy" -c '' 2>/dev/null; then
  command -v "$python" >/dev/null || { log "$python not found"; exit 1; }
  rm -rf "$venv"
  log "creating $venv with $("$python" --version 2>&1)"
  err="$(mktemp)"
  if ! "$python" -m venv "$venv" 2>"$err"; then
    # Debian's python3 without python3-venv has no ensurepip: fall back to
    # virtualenv from PyPI.
    log "python -m venv failed ($(tail -n 1 "$err")); trying virtualenv"
    rm -rf "$venv"
    if ! "$python" -m virtualenv --version >/dev/null 2>&1; then
      log "installing virtualenv for the current user"
      "$python" -m pip install --user --quiet virtualenv \
        || "$python" -m pip install --user --quiet --break-system-packages virtualenv
    fi
    "$python" -m virtualenv --quiet "$venv"
  fi
  rm -f "$err"
fi

pip=("$vpy" -m pip --disable-pip-version-check)
# Any TensorFlow distribution counts (tensorflow, tensorflow-cpu, tf-nightly,
# ...): they share the import name, and a second one would overwrite the first.
if "$vpy" - <<'EOF'
import sys
from importlib import metadata
names = {(d.metadata["Name"] or "").lower().replace("_", "-") for d in metadata.distributions()}
dists = {"tensorflow", "tensorflow-cpu", "tf-nightly", "tf-nightly-cpu",
         "tensorflow-macos", "tensorflow-intel", "tensorflow-aarch64"}
sys.exit(0 if names & dists else 1)
EOF
then
  log "TensorFlow already installed: $("$vpy" -m pip list 2>/dev/null | grep -iE '^(tensorflow|tf-nightly)' | tr -s ' ' | paste -sd, -)"
  tf=()
else
  log "installing $TFGRAD_TF_SPEC (a few hundred MB, takes a minute or two)"
  tf=("$TFGRAD_TF_SPEC")
fi
log "pip install ${tf[*]:+${tf[*]} }${requirements[*]}"
"${pip[@]}" install --quiet "${tf[@]}" "${requirements[@]}"
"${pip[@]}" install --quiet --no-deps "${no_deps[@]}"
"$vpy" -c 'import tensorflow as tf, numpy, absl, pytest, xdist; print("setup_env: ready: python", __import__("sys").version.split()[0], "tensorflow", tf.__version__)' 2>/dev/null \
  || { log "the venv at $venv cannot import TensorFlow"; exit 1; }
echo "$want" > "$stamp"
