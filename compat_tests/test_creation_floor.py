"""The creation floor (tfgrad/cli/creation_floor.py, bench --creation_floor):
the ops it makes again are the gradient's ops exactly, usable from Python
and runnable; what it cannot make again it says why."""

import json

import numpy as np
import pytest
import tensorflow as tf

import tfgrad
from tfgrad import tf_compat
from tfgrad.cli import bench
from tfgrad.cli import creation_floor
from tfgrad.cli import models

_ENGINES = {"tfgrad": tfgrad.gradients, "stock": tf.gradients}
_MODELS = {"mlp": dict(depth=3, width=8, batch=4), "cnn": {},
           "transformer": dict(blocks=1), "fanout": dict(n=20),
           "embedding": {}}


def _builder(name):
  return lambda: models.build(name, **_MODELS[name])


def _nodes(graph, names):
  """name -> NodeDef of `graph`'s nodes named in `names`."""
  return {n.name: n for n in graph.as_graph_def().node if n.name in names}


@pytest.mark.parametrize("engine", sorted(_ENGINES))
@pytest.mark.parametrize("model", sorted(_MODELS))
def test_both_ways_make_the_recorded_ops_exactly(model, engine):
  """Every op made again has the recorded NodeDef (type, name, inputs in
  order, control inputs, attributes including `_class`, device), and a
  Python Operation whose outputs have the original static shapes."""
  build = _builder(model)
  added, library, forward = creation_floor.record(build, _ENGINES[engine])
  assert added.node
  recorded = {n.name: n for n in added.node}
  outside = creation_floor._outside(added, forward)
  shapes = {}
  original = tf.Graph()
  with original.as_default():
    ys, xs = build()
    _ENGINES[engine](ys, xs)
  for name in recorded:
    op = original.get_operation_by_name(name)
    shapes[name] = [t.shape.as_list() if t.shape.rank is not None else None
                    for t in op.outputs]
  _, graph = creation_floor.one_by_one(build, added, library, outside)
  _, batch_graph, made = creation_floor.batch(build, added, library, outside)
  assert [op.name for op in made] == [n.name for n in added.node]
  for g in (graph, batch_graph):
    assert _nodes(g, recorded) == recorded
    for name, expected in shapes.items():
      op = g.get_operation_by_name(name)
      assert [t.shape.as_list() if t.shape.rank is not None else None
              for t in op.outputs] == expected, name


def test_batch_made_gradient_runs_and_gives_the_original_values():
  """The ops of one import, wrapped for Python, form a working graph: a
  Session runs the gradient there and gets the original's values."""
  config = bench.builtin_config("mlp_10")
  keep = {}

  def build():
    keep["built"] = built = config.builder.build()
    return built.ys, built.xs

  original = tf.Graph()
  with original.as_default():
    ys, xs = build()
    grads = tfgrad.gradients(ys, xs)
    names = [g.name for g in grads]
    with tf.compat.v1.Session(graph=original) as sess:
      keep["built"].init(sess)
      expected = sess.run(grads, feed_dict=keep["built"].feed)
  added, library, forward = creation_floor.record(build, tfgrad.gradients)
  outside = creation_floor._outside(added, forward)
  _, graph, _ = creation_floor.batch(build, added, library, outside)
  with graph.as_default(), tf.compat.v1.Session(graph=graph) as sess:
    keep["built"].init(sess)
    got = sess.run([graph.get_tensor_by_name(n) for n in names],
                   feed_dict=keep["built"].feed)
  assert len(got) == len(expected) > 0
  for a, b in zip(got, expected):
    np.testing.assert_array_equal(a, b)


def test_one_by_one_leaves_no_serialized_attributes_behind():
  build = _builder("mlp")
  added, library, forward = creation_floor.record(build, tfgrad.gradients)
  before = len(tf_compat._serialized_attrs)
  creation_floor.one_by_one(build, added, library,
                            creation_floor._outside(added, forward))
  assert len(tf_compat._serialized_attrs) == before


def test_gradient_that_changed_the_forward_op_is_not_replayable():
  """A While gradient adds accumulator outputs to the forward loop: a
  fresh build has no such outputs, and the floor says so."""
  with pytest.raises(creation_floor.NotReplayable,
                     match=r"output the gradient call added to forward op "
                     r"'.*' \(op type: While\)"):
    creation_floor.measure(lambda: models.build("while_rnn", steps=3),
                           tfgrad.gradients)


def test_v1_loop_back_edge_is_not_replayable():
  with models.v1_control_flow(), pytest.raises(
      creation_floor.NotReplayable, match="made after it"):
    creation_floor.measure(lambda: models.build("dynamic_rnn_v1", steps=3),
                           tf.gradients)


def test_bench_reports_the_floor_per_model_and_engine(tmp_path, capsys):
  """--creation_floor: per engine, positive floors and the engine's own
  share (build less the one-by-one floor) in the JSON and the output."""
  out = tmp_path / "bench.json"
  status = _run_bench(["--models=mlp_10,while_rnn", "--repeats=1",
                       "--norun", "--creation_floor", f"--json={out}"])
  assert status == 0
  report = json.loads(out.read_text())
  mlp = report["creation_floor"]["mlp_10"]
  for engine in bench.ENGINES:
    entry = mlp[engine]
    assert entry["ops"] > 0
    assert 0 < entry["batch_us"] and 0 < entry["one_by_one_us"]
    assert entry["engine_us"] == pytest.approx(
        entry["build_us"] - entry["one_by_one_us"])
  assert "not_replayable" in report["creation_floor"]["while_rnn"]["tfgrad"]
  printed = capsys.readouterr().out
  assert "creation floor, us per added op" in printed
  assert "mlp_10/tfgrad" in printed and "not replayable" in printed


def _run_bench(argv):
  from absl import flags  # pylint: disable=g-import-not-at-top
  fv = flags.FlagValues()
  bench.define_flags(fv)
  fv(["tfgrad-bench"] + argv)
  return bench.run(fv)
