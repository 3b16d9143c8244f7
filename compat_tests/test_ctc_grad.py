"""ops/ctc_grad.py: every spec against stock TF and finite differences."""

from tfgrad.ops import ctc_grad  # noqa: F401

import pytest

from compat_tests import harness
from compat_tests import ctc_specs


@pytest.mark.parametrize(**harness.cases(ctc_specs.SPECS))
def test_matches_tf(spec, dtype):
  harness.check_matches_tf(spec, dtype)


@pytest.mark.parametrize(**harness.numeric_cases(ctc_specs.SPECS))
def test_numeric(spec, order):
  harness.check_numeric(spec, order)


def test_second_order_refused():
  """A second derivative through CTCLoss raises LookupError, as in TF."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tfgrad  # pylint: disable=g-import-not-at-top
  spec = ctc_specs.SPECS[0]
  with tf.Graph().as_default():
    x = tf.zeros(spec.shapes[0], tf.float64)
    (g,) = tfgrad.gradients(spec.build(x), [x])
    with pytest.raises(LookupError, match="second derivative"):
      tfgrad.gradients(tf.reduce_sum(g * g), [x])
