"""`python -m tfgrad.compare`: the same tool as the `tfgrad-compare` command
(`tfgrad.cli.compare`, whose docstring is this module's usage text)."""

from tfgrad.cli import compare as _tool
from tfgrad.cli.compare import main

__doc__ = _tool.__doc__  # pylint: disable=redefined-builtin

if __name__ == "__main__":
  main()
