"""Run tfgrad and stock tf.gradients on the same graph and compare.

Used by the semantic tests: a case is a `build()` returning (ys, xs) built
in the current graph; both engines get the same keyword arguments, in a
TF1-style `tf.Graph` (`in_graph`) and inside a `tf.function`
(`in_function`). Compared: None pattern, Tensor vs IndexedSlices, dtype,
static shape, values.
"""

import contextlib
import threading

import numpy as np
import tensorflow as tf

import tfgrad


def describe(g):
  """Structure of one gradient: None, or (kind, dtype, static shape)."""
  if g is None:
    return None
  if isinstance(g, tf.IndexedSlices):
    return ("IndexedSlices", g.dtype.name, g.values.shape.as_list())
  return ("Tensor", g.dtype.name, g.shape.as_list())


def _fetch(g):
  if g is None:
    return None
  if isinstance(g, tf.IndexedSlices):
    return tf.convert_to_tensor(g)
  return g


def _run(sess, grads):
  """Values of the non-None gradients, None kept in place."""
  values = iter(sess.run([_fetch(g) for g in grads if g is not None]))
  return [None if g is None else next(values) for g in grads]


def values_in_session(*gradient_lists):
  """In a new Session on the default graph, with variables initialized:
  the values of each list of gradients (None kept in place)."""
  with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    return [_run(sess, grads) for grads in gradient_lists]


class _FunctionVariables:
  """Variables made while tracing a tf.function: created on the first trace,
  handed back in the same order on later traces (tf.function refuses
  variables created after the first trace)."""
  made = None   # list while a tf.function case runs, else None
  next = 0


@contextlib.contextmanager
def variables_kept_across_traces():
  """While open, `variable` makes each variable once, on a tf.function's
  first trace, and hands the same ones back on later traces; each trace
  starts with `rewind_variables()`."""
  _FunctionVariables.made = []
  try:
    yield
  finally:
    _FunctionVariables.made = None


def rewind_variables():
  """Called first in a traced function: the next `variable` call gets the
  first variable made, as on the first trace."""
  _FunctionVariables.next = 0


def variable(value, dtype=tf.float32):
  """A resource variable usable in both kinds of case."""
  cache = _FunctionVariables
  if cache.made is None:
    return tf.Variable(tf.constant(value, dtype=dtype))
  if cache.next == len(cache.made):
    with tf.init_scope():
      cache.made.append(tf.Variable(tf.constant(value, dtype=dtype)))
  cache.next += 1
  return cache.made[cache.next - 1]


def assert_same(ours, theirs, ours_values, theirs_values, rtol=1e-6):
  assert len(ours) == len(theirs)
  assert [describe(g) for g in ours] == [describe(g) for g in theirs]
  for i, (a, b) in enumerate(zip(ours_values, theirs_values)):
    if a is None or b is None:
      assert a is None and b is None, f"gradient {i}: None pattern differs"
    else:
      np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol,
                                 err_msg=f"gradient {i} differs")


def in_graph(build, v1=False, **kwargs):
  """Both engines in a fresh tf.Graph; returns (ours, theirs, values...)."""
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = build()
    if v1:
      ours = tfgrad.compat.v1.gradients(ys, xs, **kwargs)
      theirs = tf.compat.v1.gradients(ys, xs, **kwargs)
    else:
      ours = tfgrad.gradients(ys, xs, **kwargs)
      theirs = tf.gradients(ys, xs, **kwargs)
    init = tf.compat.v1.global_variables_initializer()
    with tf.compat.v1.Session(graph=graph) as sess:
      sess.run(init)
      ours_v, theirs_v = _run(sess, ours), _run(sess, theirs)
  assert_same(ours, theirs, ours_v, theirs_v)
  return ours, theirs, ours_v, theirs_v


def in_function(build, engine=None, rtol=1e-6, **kwargs):
  """Both engines inside one tf.function; returns the values. `engine`
  (ys, xs) -> gradients stands for `tfgrad.gradients(ys, xs, **kwargs)`
  where a case calls tfgrad with arguments stock does not take."""
  structure = {}

  @tf.function
  def run():
    rewind_variables()
    ys, xs = build()
    ours = (tfgrad.gradients(ys, xs, **kwargs) if engine is None
            else engine(ys, xs))
    theirs = tf.gradients(ys, xs, **kwargs)
    structure["ours"] = [describe(g) for g in ours]
    structure["theirs"] = [describe(g) for g in theirs]
    return [_fetch(g) for g in ours], [_fetch(g) for g in theirs]

  with variables_kept_across_traces():
    ours_v, theirs_v = run()
  assert structure["ours"] == structure["theirs"]
  ours_v = [None if v is None else v.numpy() for v in ours_v]
  theirs_v = [None if v is None else v.numpy() for v in theirs_v]
  for i, (a, b) in enumerate(zip(ours_v, theirs_v)):
    if a is None or b is None:
      assert a is None and b is None, f"gradient {i}: None pattern differs"
    else:
      np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-6)
  return ours_v, theirs_v


def both(build, **kwargs):
  """The case in a tf.Graph and in a tf.function; returns graph values."""
  result = in_graph(build, **kwargs)
  in_function(build, **kwargs)
  return result


def gradients_on_two_threads(graph, ys, xs, **kwargs):
  """`tfgrad.gradients(ys, xs, **kwargs)` called by two threads at once in
  `graph` (released together by a barrier, so their builds overlap);
  returns both results. The first error a thread met is raised here."""
  barrier = threading.Barrier(2)
  results, errors = [None, None], []

  def work(i):
    try:
      with graph.as_default():
        barrier.wait()
        results[i] = tfgrad.gradients(ys, xs, **kwargs)
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)
  threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert not errors, errors
  return results


def run_imported(graph_def, fetches, init=None):
  """Imports `graph_def` into a new graph and runs the tensors named like
  `fetches` there (after the op named like `init`, if given): the values a
  user gets from the exported graph."""
  names = [t.name for t in fetches] + ([init.name] if init is not None else [])
  with tf.Graph().as_default():
    imported = tf.graph_util.import_graph_def(
        graph_def, return_elements=names, name="")
    with tf.compat.v1.Session() as sess:
      if init is not None:
        sess.run(imported[-1])
        imported = imported[:-1]
      return sess.run(imported)
