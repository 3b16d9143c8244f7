"""ops/xla_grad.py: every spec against stock TF (structure only where the
op has no CPU kernel) and finite differences."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.compiler.jit.ops import xla_ops

import tfgrad
from tfgrad.ops import xla_grad  # noqa: F401
from compat_tests import harness
from compat_tests import xla_specs


@pytest.mark.parametrize(**harness.cases(xla_specs.SPECS))
def test_matches_tf(spec, dtype):
  harness.check_matches_tf(spec, dtype)


@pytest.mark.parametrize(**harness.numeric_cases(xla_specs.SPECS))
def test_numeric(spec, order):
  harness.check_numeric(spec, order)


def test_sharding_grad_carries_the_sharding_attribute():
  """XLA reads the gradient's sharding from its _XlaSharding attribute."""
  with tf.Graph().as_default():
    x = tf.constant(np.ones((4, 2)))
    (grad,) = tfgrad.gradients(xla_specs.sharding(xla_specs.SHARDING)(x), x)
    assert grad.op.type == "XlaSharding"
    assert grad.op.get_attr("_XlaSharding") == xla_specs.SHARDING
    assert grad.op.get_attr("sharding") == xla_specs.SHARDING


def test_cluster_output_grad_raises_like_tf():
  """XlaClusterOutput refuses like stock TF: the same error type, naming
  the op."""
  with tf.Graph().as_default():
    x = tf.constant([1.0, 2.0])
    y = xla_ops.xla_cluster_output(x * x, name="cluster_out")
    with pytest.raises(RuntimeError, match="xla.compile"):
      tf.gradients(y, x)
    with pytest.raises(RuntimeError, match="cluster_out"):
      tfgrad.gradients(y, x)
