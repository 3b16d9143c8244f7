"""Runs tfgrad-compare from a checkout (`python tools/compare.py --help`); the
tool itself is `tfgrad/cli/compare.py`."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
from tfgrad.cli import compare as _tool
from tfgrad.cli.compare import main

__doc__ = _tool.__doc__  # the usage text of --help

if __name__ == "__main__":
  main()
