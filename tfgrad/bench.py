"""`python -m tfgrad.bench`: the same tool as the `tfgrad-bench` command
(`tfgrad.cli.bench`, whose docstring is this module's usage text)."""

from tfgrad.cli import bench as _tool
from tfgrad.cli.bench import main

__doc__ = _tool.__doc__  # pylint: disable=redefined-builtin

if __name__ == "__main__":
  main()
