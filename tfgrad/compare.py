"""`python -m tfgrad.compare`: the same tool as the `tfgrad-compare` command
(`tfgrad.cli.compare`)."""

from tfgrad.cli.compare import main

if __name__ == "__main__":
  main()
