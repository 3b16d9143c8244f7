"""Gradients built on several threads at once.

Each threaded result is compared with the same build done alone on the
main thread: the gradient's op types (a multiset), structure and values.
Stock `tf.gradients` and TF's own control flow, run on other threads at the
same time, must stay exactly TF's, and no TF module attribute tfgrad could
touch may ever be seen changed while tfgrad is not installed.
"""

import collections
import importlib
import threading

import numpy as np
import tensorflow as tf
from tensorflow.python.eager.polymorphic_function import concrete_function
from tensorflow.python.ops import cond_v2
from tensorflow.python.ops import gradients_util
from tensorflow.python.ops import while_v2

import tfgrad
from compat_tests import differential
from tfgrad.cli import models

SIZES = {
    "mlp": dict(depth=2, width=8, batch=4),
    "cnn": dict(batch=2, size=8, channels=2),
    "transformer": dict(blocks=1, batch=2, seq=4, d_model=8, heads=2),
    "while_rnn": dict(steps=3, batch=2, hidden=4, features=3),
    "embedding": dict(vocab=20, dim=4, batch=4, bag=3),
    "nested_function": dict(depth=2, width=4, batch=2),
}
MODELS = sorted(SIZES)
install_module = importlib.import_module("tfgrad.install")

# Modules whose globals tfgrad's engine reads TF's builders through (never
# writes), and those install() patches.
_WATCHED_MODULES = (gradients_util, while_v2, cond_v2, concrete_function)


def _dense_values(values):
  return [None if v is None else np.asarray(
      v.values if isinstance(v, tf.compat.v1.SparseTensorValue) else v)
          for v in values]


def _graph_run(engine, model):
  """(op types the gradient added, structure, values) in a tf.Graph."""
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = models.build(model, **SIZES[model])
    before = len(graph.get_operations())
    grads = engine(ys, xs)
    added = graph.get_operations()[before:]
    types = collections.Counter(op.type for op in added)
    leftovers = [op.name for op in graph.get_operations()
                 if hasattr(op, "skip_input_indices")]
    assert not leftovers, leftovers
    init = tf.compat.v1.global_variables_initializer()
    with tf.compat.v1.Session(graph=graph) as sess:
      sess.run(init)
      values = differential._run(sess, grads)  # pylint: disable=protected-access
  return types, [differential.describe(g) for g in grads], values


def _function_run(engine, model):
  """The same in a function graph traced (and run) on this thread
  (`wrap_function`, which lifts the variables the model creates)."""
  def step():
    ys, xs = models.build(model, **SIZES[model])
    return [g if g is None else tf.convert_to_tensor(g)
            for g in engine(ys, xs)]
  fn = tf.compat.v1.wrap_function(step, signature=[])
  values = [None if v is None else v.numpy() for v in fn()]
  types = collections.Counter(op.type for op in fn.graph.get_operations())
  return types, None, values


RUNS = {"graph": _graph_run, "function": _function_run}


def _same(result, reference):
  types, structure, values = result
  ref_types, ref_structure, ref_values = reference
  assert types == ref_types
  assert structure == ref_structure
  for a, b in zip(values, ref_values):
    assert (a is None) == (b is None)
    if a is not None:
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _in_threads(jobs, threads):
  """Runs the callables of `jobs` (a list per thread) on `threads` threads
  started together; returns the exceptions raised, if any."""
  errors = []
  barrier = threading.Barrier(threads)

  def worker(i):
    barrier.wait()
    for job in jobs[i]:
      try:
        job()
      except Exception as e:  # pylint: disable=broad-except
        errors.append(e)
  pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
  for t in pool:
    t.start()
  for t in pool:
    t.join()
  return errors


class _Watcher:
  """Samples every global of the watched TF modules while threads run, and
  records any that is not the object it was at the start."""

  def __init__(self):
    self.start = [dict(vars(m)) for m in _WATCHED_MODULES]
    self.changed = set()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._watch)

  def _watch(self):
    while not self._stop.is_set():
      for module, start in zip(_WATCHED_MODULES, self.start):
        for name, value in list(vars(module).items()):
          if start.get(name, value) is not value:
            self.changed.add(f"{module.__name__}.{name}")
      self._stop.wait(0.001)

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()


def test_eight_threads_on_separate_graphs_with_stock_alongside():
  """8 threads build tfgrad gradients of every model, in tf.Graphs and
  tf.functions; 2 more run stock tf.gradients and plain tf.while_loops.
  Everything equals the single-threaded builds."""
  assert not install_module.is_installed()
  cases = [(m, mode) for m in MODELS for mode in RUNS]
  reference = {c: RUNS[c[1]](tfgrad.gradients, c[0]) for c in cases}
  stock_reference = {m: _graph_run(tf.gradients, m) for m in MODELS}

  def ours(case):
    return lambda: _same(RUNS[case[1]](tfgrad.gradients, case[0]),
                         reference[case])

  def stock(model):
    return lambda: _same(_graph_run(tf.gradients, model),
                         stock_reference[model])

  jobs = [[ours(cases[(i + k) % len(cases)]) for k in range(len(cases))]
          for i in range(8)]
  jobs += [[stock(MODELS[(i + k) % len(MODELS)]) for k in range(4)]
           for i in range(2)]
  with _Watcher() as watcher:
    errors = _in_threads(jobs, len(jobs))
  assert not errors, errors[:3]
  assert not watcher.changed


def _loop_graph(graph):
  with graph.as_default():
    a = tf.constant(np.linspace(0.1, 1.0, 16).reshape(4, 4), tf.float32)
    b = tf.constant(np.linspace(0.2, 2.0, 16).reshape(4, 4), tf.float32)
    w = tf.constant(np.eye(4) * 0.5, tf.float32)
    h = tf.tanh(a @ w) * tf.sin(b) + tf.math.xlogy(a, b)
    _, z = tf.while_loop(lambda i, v: i < 3,
                         lambda i, v: (i + 1, tf.sin(v) * a), [0, h])
    y = tf.reduce_sum(z * b)
  return graph, y, {"a": [a], "b": [b], "ab": [a, b], "w": [w]}


def _scoped_types(graph, scope):
  return collections.Counter(op.type for op in graph.get_operations()
                             if op.name.startswith(scope + "/"))


def test_four_threads_on_one_graph_with_different_xs():
  """4 threads differentiate one tf.Graph (holding a while loop) with
  different xs, 5 calls each: the ops each call adds under its name scope
  and its values equal those of the same call made alone. (A FuncGraph is
  traced by one thread: TF's `FuncGraph.as_default` itself is not safe to
  enter from several threads at once.)"""
  graph, y, xs_of = _loop_graph(tf.Graph())
  keys = sorted(xs_of)
  with graph.as_default():
    tfgrad.gradients(y, xs_of["ab"], name="warmup")  # the loop's accumulators
    reference = {}
    for key in keys:
      grads = tfgrad.gradients(y, xs_of[key], name=f"ref_{key}")
      reference[key] = (_scoped_types(graph, f"ref_{key}"), grads)
  results = []

  def call(thread, k):
    key = keys[(thread + k) % len(keys)]
    scope = f"t{thread}_{k}"
    def run():
      with graph.as_default():
        results.append((key, scope, tfgrad.gradients(y, xs_of[key],
                                                     name=scope)))
    return run
  errors = _in_threads([[call(t, k) for k in range(5)] for t in range(4)], 4)
  assert not errors, errors[:3]
  assert len(results) == 20
  for key, scope, _ in results:
    assert _scoped_types(graph, scope) == reference[key][0], (key, scope)
  assert not any(hasattr(op, "skip_input_indices")
                 for op in graph.get_operations())
  with tf.compat.v1.Session(graph=graph) as sess:
    ref_values = sess.run({k: v[1] for k, v in reference.items()})
    values = sess.run([r[2] for r in results])
  for (key, _, _), got in zip(results, values):
    for a, b in zip(got, ref_values[key]):
      np.testing.assert_allclose(a, b, rtol=1e-6)


def test_install_and_uninstall_racing_with_gradient_calls():
  """Threads install, uninstall and enter installed() blocks while others
  build gradients with tfgrad and with tf.gradients; afterwards, uninstall()
  leaves every attribute tfgrad ever patches identical to TF's original,
  and every global of the modules TF's builders live in untouched."""
  patched = [(install_module._module(path), attr)  # pylint: disable=protected-access
             for path, attr, _ in install_module._PATCHES]  # pylint: disable=protected-access
  originals = [getattr(m, a, None) for m, a in patched]
  module_globals = [dict(vars(m)) for m in _WATCHED_MODULES]
  reference = _graph_run(tf.gradients, "while_rnn")[2]

  def toggle(k):
    def run():
      if k % 3 == 0:
        tfgrad.install()
      elif k % 3 == 1:
        tfgrad.uninstall()
      else:
        with tfgrad.installed():
          assert tf.gradients is tfgrad.gradients
    return run

  def differentiate(engine):
    def run():
      values = _graph_run(engine, "while_rnn")[2]
      for a, b in zip(values, reference):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    return run
  jobs = [[toggle(i + k) for k in range(60)] for i in range(4)]
  jobs += [[differentiate(tfgrad.gradients)] * 3,
           [differentiate(lambda ys, xs: tf.gradients(ys, xs))] * 3]
  errors = _in_threads(jobs, len(jobs))
  assert not errors, errors[:3]
  tfgrad.uninstall()
  assert not install_module.is_installed()
  for (module, attr), original in zip(patched, originals):
    assert getattr(module, attr, None) is original, (module.__name__, attr)
  for module, start in zip(_WATCHED_MODULES, module_globals):
    now = vars(module)
    assert all(now.get(k) is v for k, v in start.items()), module.__name__


def test_installed_blocks_on_several_threads_uninstall_with_the_last():
  original = tf.gradients
  inside, release = threading.Barrier(3), threading.Event()
  seen = []

  def block():
    with tfgrad.installed():
      inside.wait()
      release.wait()
      seen.append(tf.gradients is tfgrad.gradients)
  pool = [threading.Thread(target=block) for _ in range(2)]
  for t in pool:
    t.start()
  inside.wait()
  assert tf.gradients is tfgrad.gradients
  release.set()
  for t in pool:
    t.join()
  assert seen == [True, True]
  assert tf.gradients is original


def test_attribute_cache_filled_from_many_threads_serializes_right():
  """emit caches one AttrValue per (kind, value) and its serialization by
  the proto's id; threads filling it at once must never leave bytes that
  belong to another proto (an id reused after a dropped proto died)."""
  from tfgrad import emit, tf_compat  # pylint: disable=g-import-not-at-top
  values = [("list(int)", tuple(range(k, k + 3))) for k in range(5000, 5400)]

  def fill(offset):
    def run():
      for kind, value in values[offset:] + values[:offset]:
        proto = emit._attr(kind, value)  # pylint: disable=protected-access
        assert list(proto.list.i) == list(value)
        assert (tf_compat._serialized(proto)  # pylint: disable=protected-access
                == proto.SerializeToString())
    return run
  errors = _in_threads([[fill(37 * i)] for i in range(8)], 8)
  assert not errors, errors[:3]
  for (kind, value) in values:
    proto = emit._attr(kind, value)  # pylint: disable=protected-access
    assert tf_compat._serialized(proto) == proto.SerializeToString()  # pylint: disable=protected-access
