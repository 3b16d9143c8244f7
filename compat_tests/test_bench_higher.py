"""tools/bench_higher.py: each case measures both engines on the same
function and their results agree."""

from absl import flags
from absl.testing import flagsaver
import pytest

from tools import bench_higher

FLAGS = flags.FLAGS


@pytest.fixture(autouse=True)
def parsed_flags():
  if not FLAGS.is_parsed():
    FLAGS(["bench_higher"])
  with flagsaver.flagsaver(pairs=2, builds=2):
    yield


@pytest.mark.parametrize("case", ["hessians_64", "batch_jacobian_256",
                                  "jvp_cnn"])
def test_case_measures_both_engines(case):
  row = bench_higher.CASES[case]()
  assert row["case"] == case
  assert row["max_diff"] < 1e-4
  for key in ("build_ours_ms", "build_stock_ms", "run_ours_ms",
              "run_stock_ms", "build_ratio", "run_ratio"):
    assert row[key] > 0, key
  assert row["ops_ours"] > 0 and row["ops_stock"] > 0
  if case.startswith("jvp"):
    assert 0 < row["needed_ours"] <= row["ops_ours"]
