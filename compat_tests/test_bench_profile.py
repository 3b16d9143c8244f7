"""The bench's construction profile and heap growth (`--profile`, `--heap`)
on a real model, for both engines."""

import tensorflow as tf

import tfgrad
from tfgrad.cli import bench
from tfgrad.cli import build_profile


def _build():
  built = bench.builtin_config("mlp_10").builder.build()
  return built.ys, built.xs


def test_parts_of_each_engine():
  ours, our_ops = build_profile.profile(_build, tfgrad.gradients)
  theirs, their_ops = build_profile.profile(_build, tf.gradients)
  assert our_ops > 0 and their_ops > 0
  for parts in (ours, theirs):
    assert set(parts) == set(build_profile.PARTS)
    assert all(v >= 0 for v in parts.values())
    assert parts["C API"] > 0 and parts["wrapping"] > 0
  for parts in (ours, theirs):
    assert parts["walk"] > 0 and parts["op assembly"] > 0
    assert parts["rules"] > 0
  per_op = build_profile.per_op_us(ours, 10.0, our_ops)
  assert abs(sum(per_op.values()) - 1e4 / our_ops) < 1e-6


def test_part_of():
  assert build_profile.part_of("~", "<built-in method "
                               "TF_FinishOperation>") == "C API"
  assert build_profile.part_of(
      "/x/tensorflow/python/framework/ops.py", "unique_name") == "names"
  assert build_profile.part_of("/x/ops/math_grad.py", "_mul") == "rules"
  assert build_profile.part_of(
      "/x/tensorflow/python/ops/math_grad.py", "_MulGrad") == "rules"
  assert build_profile.part_of(
      "/x/tensorflow/python/ops/gen_math_ops.py", "mul") == "op assembly"
  assert build_profile.part_of(
      "/x/tensorflow/python/ops/gradients_util.py",
      "_GradientsHelper") == "walk"
  assert build_profile.part_of("/x/tfgrad/graph_walk.py",
                               "between") == "walk"


def test_heap_growth_per_op():
  config = bench.builtin_config("mlp_10")
  for engine in bench.ENGINES:
    held = bench.heap_bytes_per_op(config, engine)
    assert held is not None and held > 0, (engine, held)


def test_v1_model_profiled_with_v1_control_flow():
  """--profile builds a v1 model as the bench measures it (v1 frames): the
  profiled build adds as many ops as the measured one."""
  config = bench.builtin_config("nested_scan_v1")
  for engine in bench.ENGINES:
    measured, _ = bench.measure(config, engine, strict=engine == "tfgrad")
    _, ops = bench.profile_build(config, engine, strict=engine == "tfgrad")
    assert ops == measured["ops"], engine
