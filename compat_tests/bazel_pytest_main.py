"""Entry point of the `bazel test` targets: runs pytest on one test file.

Usage (as BUILD sets it up): bazel_pytest_main.py compat_tests/test_X.py

Follows Bazel's test protocol: with `shard_count` set, shard i of n runs the
collected cases i, i + n, i + 2n, ...; a JUnit report goes to
$XML_OUTPUT_FILE so `bazel test` shows per-case results.
"""

import os
import sys

import pytest


class _Shard:
  """pytest plugin keeping one shard's share of the collected cases."""

  def __init__(self, index, count):
    self.index = index
    self.count = count

  def pytest_collection_modifyitems(self, config, items):
    keep = items[self.index::self.count]
    kept = set(map(id, keep))
    dropped = [item for item in items if id(item) not in kept]
    if dropped:
      config.hook.pytest_deselected(items=dropped)
    items[:] = keep


def main(argv):
  args = ["-q", "-p", "no:cacheprovider"] + argv[1:]
  plugins = []
  count = int(os.environ.get("TEST_TOTAL_SHARDS", "1"))
  if count > 1:
    plugins.append(_Shard(int(os.environ["TEST_SHARD_INDEX"]), count))
    status = os.environ.get("TEST_SHARD_STATUS_FILE")
    if status:
      open(status, "w").close()  # Tells Bazel this runner shards.
  if os.environ.get("XML_OUTPUT_FILE"):
    args.append("--junitxml=" + os.environ["XML_OUTPUT_FILE"])
  code = pytest.main(args, plugins=plugins)
  if code == pytest.ExitCode.NO_TESTS_COLLECTED and count > 1:
    code = pytest.ExitCode.OK  # More shards than cases in this file.
  return int(code)


if __name__ == "__main__":
  sys.exit(main(sys.argv))
