"""The benchmark tool's measurements: dead-op counting, the pooled run-time
and peak-memory summary, and one real measurement of both engines."""

import pytest
import tensorflow as tf

from tfgrad.cli import bench


def test_dead_ops_counts_added_ops_no_gradient_depends_on():
  g = tf.Graph()
  with g.as_default():
    x = tf.constant([1.0, 2.0])
    before = len(g.get_operations())
    used = tf.sin(x)
    unused = tf.cos(x)
    tf.exp(unused)
    result = tf.identity(used)
    added = g.get_operations()[before:]
  assert bench.dead_ops(added, [result]) == 2
  assert bench.dead_ops(added, [result, unused]) == 1


def test_dead_ops_follows_indexed_slices_components():
  g = tf.Graph()
  with g.as_default():
    before = len(g.get_operations())
    values = tf.ones([2, 3])
    indices = tf.constant([0, 2])
    shape = tf.constant([4, 3])
    added = g.get_operations()[before:]
  slices = tf.IndexedSlices(values, indices, shape)
  assert bench.dead_ops(added, [slices]) == 0
  assert bench.dead_ops(added, [None]) == len(added)


def test_summarise_pools_runs_and_pairs_ratios():
  samples = {
      "tfgrad": [dict(ops=10, build_ms=1.0, dead_ops=0, forward_ops=5,
                      run_s=[1.0, 3.0], peaks=[100, 300]),
                 dict(ops=10, build_ms=3.0, dead_ops=0, forward_ops=5,
                      run_s=[5.0], peaks=[200])],
      "stock": [dict(ops=20, build_ms=4.0, dead_ops=2, forward_ops=5,
                     run_s=[2.0, 2.0], peaks=[200, 200]),
                dict(ops=20, build_ms=8.0, dead_ops=2, forward_ops=5,
                     run_s=[4.0], peaks=[400])],
  }
  row = bench.summarise(bench.builtin_config("mlp_10"), samples)
  assert row["ops_ratio"] == 0.5
  # per-repeat build ratios 1/4 and 3/8: their median
  assert row["build_ms_ratio"] == pytest.approx((0.25 + 0.375) / 2)
  assert row["run_ms_tfgrad"] == pytest.approx(3e3)
  assert row["run_ms_stock"] == pytest.approx(2e3)
  # back-to-back ratios 0.5, 1.5, 1.25: their median, not 3/2 of medians
  assert row["run_ms_ratio"] == pytest.approx(1.25)
  assert row["peak_bytes_ratio"] == pytest.approx(200 / 200)
  assert row["run_count_tfgrad"] == 3


def test_one_measurement_of_both_engines():
  built, results = {}, {}
  for engine in bench.ENGINES:
    results[engine], built[engine] = bench.measure(
        bench.builtin_config("mlp_10"), engine)
  stats = bench.run_both(built, run_repeats=3)
  for engine in bench.ENGINES:
    assert results[engine]["ops"] > 0
    assert len(stats[engine]["run_s"]) == 3
    assert all(p > 0 for p in stats[engine]["peaks"])
  # stock TF leaves ops no gradient depends on (the zeros and shape
  # arithmetic of its loss rules); tfgrad leaves none
  assert results["stock"]["dead_ops"] > 0
  assert results["tfgrad"]["dead_ops"] == 0
  assert results["tfgrad"]["ops"] < results["stock"]["ops"]


def test_function_ops_count_the_nodes_of_functions_the_gradient_adds():
  """A call's gradient is mostly the body of a new function: the bench
  counts its nodes (none for a plain model, none of the forward's)."""
  config = bench.builtin_config("nested_function")
  for engine in bench.ENGINES:
    plain, _ = bench.measure(bench.builtin_config("mlp_10"), engine)
    assert plain["function_ops"] == 0
    calls, _ = bench.measure(config, engine)
    graph = tf.Graph()
    with graph.as_default():
      built = config.builder.build()
      forward = {f.signature.name
                 for f in graph.as_graph_def().library.function}
      bench.engines(False)[engine](built.ys, built.xs)
    new_nodes = sum(len(f.node_def)
                    for f in graph.as_graph_def().library.function
                    if f.signature.name not in forward)
    assert calls["function_ops"] == new_nodes > 0, engine
