"""Running a higher-order case with tfgrad and its stock counterpart on
the same graph, in a tf.Graph with a Session or inside a tf.function, and
comparing the two (None pattern, dtype, static shape, values)."""

import numpy as np
import tensorflow as tf

MODES = ("graph", "function")


def run(mode, build, values):
  """build(xs) -> (ours, theirs), lists of tensors or None, in a tf.Graph
  with a Session or inside a tf.function; returns their values."""
  if mode == "graph":
    with tf.Graph().as_default():
      xs = [tf.constant(v) for v in values]
      ours, theirs = build(xs)
      fetch = [t for t in ours + theirs if t is not None]
      with tf.compat.v1.Session() as sess:
        got = iter(sess.run(fetch))
  else:
    structure = {}

    @tf.function
    def fn(*xs):
      ours, theirs = build(list(xs))
      structure["both"] = ours + theirs
      return [t for t in ours + theirs if t is not None]
    got = iter([t.numpy() for t in fn(*[tf.constant(v) for v in values])])
    ours = structure["both"][:len(structure["both"]) // 2]
    theirs = structure["both"][len(ours):]
  ours_v = [None if t is None else next(got) for t in ours]
  theirs_v = [None if t is None else next(got) for t in theirs]
  return ours, theirs, ours_v, theirs_v


def assert_same(ours, theirs, ours_v, theirs_v, rtol=1e-9):
  assert len(ours) == len(theirs)
  for i, (a, b, av, bv) in enumerate(zip(ours, theirs, ours_v, theirs_v)):
    assert (a is None) == (b is None), f"entry {i}: None pattern differs"
    if a is None:
      continue
    assert a.dtype == b.dtype, f"entry {i}: dtype"
    assert a.shape.is_compatible_with(b.shape), f"entry {i}: static shape"
    assert av.shape == bv.shape, f"entry {i}: shape"
    np.testing.assert_allclose(av, bv, rtol=rtol, atol=rtol,
                               err_msg=f"entry {i} differs")
