"""`python -m tfgrad.coverage`: the same tool as the `tfgrad-coverage` command
(`tfgrad.cli.coverage`)."""

from tfgrad.cli.coverage import main

if __name__ == "__main__":
  main()
