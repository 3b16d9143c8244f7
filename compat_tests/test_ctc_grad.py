"""ops/ctc_grad.py: every spec against stock TF.

No finite-difference test: CTCLoss's gradient comes from its own kernel,
which differs from finite differences of its loss by up to about 1% (in TF
too), so the specs are order 0 and say so.
"""

import pytest
import tensorflow as tf

import tfgrad

from compat_tests import harness
from compat_tests import ctc_specs


@pytest.mark.parametrize(**harness.cases(ctc_specs.SPECS))
def test_matches_tf(spec, dtype):
  harness.check_matches_tf(spec, dtype)


def test_second_order_refused():
  """A second derivative through CTCLoss raises LookupError, as in TF."""
  spec = ctc_specs.SPECS[0]
  with tf.Graph().as_default():
    x = tf.zeros(spec.shapes[0], tf.float64)
    (g,) = tfgrad.gradients(spec.build(x), [x])
    with pytest.raises(LookupError, match="second derivative"):
      tfgrad.gradients(tf.reduce_sum(g * g), [x])
