"""`python -m tfgrad.bench`: the same tool as the `tfgrad-bench` command
(`tfgrad.cli.bench`)."""

from tfgrad.cli.bench import main

if __name__ == "__main__":
  main()
