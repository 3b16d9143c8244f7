"""`python -m tfgrad.coverage`: the same tool as the `tfgrad-coverage` command
(`tfgrad.cli.coverage`, whose docstring is this module's usage text)."""

from tfgrad.cli import coverage as _tool
from tfgrad.cli.coverage import main

__doc__ = _tool.__doc__  # pylint: disable=redefined-builtin

if __name__ == "__main__":
  main()
