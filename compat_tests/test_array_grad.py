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
