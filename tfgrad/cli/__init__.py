"""The command-line tools (tfgrad-compare, tfgrad-bench, tfgrad-coverage).

Each module's `main()` defines its absl flags when it runs, so importing
these modules defines none.
"""
