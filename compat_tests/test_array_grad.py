"""ops/array_grad.py: every spec against stock TF and finite differences."""

import pytest

from compat_tests import harness
from compat_tests import array_specs


@pytest.mark.parametrize(**harness.cases(array_specs.SPECS))
def test_matches_tf(spec, dtype):
  harness.check_matches_tf(spec, dtype)


@pytest.mark.parametrize(**harness.numeric_cases(array_specs.SPECS))
def test_numeric(spec, order):
  harness.check_numeric(spec, order)


def test_prevent_gradient_raises_lookup_error():
  """PreventGradient refuses like stock TF: LookupError naming the reason."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tfgrad  # pylint: disable=g-import-not-at-top
  with tf.Graph().as_default():
    x = tf.constant([1.0, 2.0])
    y = tf.raw_ops.PreventGradient(input=x * x, message="no way")
    for gradients in (tf.gradients, tfgrad.gradients):
      with pytest.raises(LookupError, match="no way"):
        gradients(y, x)


@pytest.mark.parametrize(
    **harness.numeric_cases(array_specs.NUMERIC_ONLY_SPECS))
def test_numeric_only(spec, order):
  harness.check_numeric(spec, order)


@pytest.mark.parametrize("op_type", array_specs.TF_WRONG_GRADIENT)
def test_tf_gradient_raises(op_type):
  """The TF bug the numeric-only specs document is real (until TF fixes it)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tfgrad  # pylint: disable=g-import-not-at-top
  for spec in (s for s in array_specs.NUMERIC_ONLY_SPECS if s.op == op_type):
    with tf.Graph().as_default():
      xs = [tf.constant(np.full(shape, 0.5)) for shape in spec.shapes]
      ys = spec.build(*xs)
      assert all(g is not None for g in tfgrad.gradients(ys[0], xs[:1]))
      with pytest.raises(TypeError):
        tf.gradients(ys, xs)
