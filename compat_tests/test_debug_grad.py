"""ops/debug_grad.py: every spec against stock TF and finite differences."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.debug.lib import debug_gradients

import tfgrad
from compat_tests import debug_specs
from compat_tests import harness


@pytest.mark.parametrize(**harness.cases(debug_specs.SPECS))
def test_matches_tf(spec, dtype):
  harness.check_matches_tf(spec, dtype)


@pytest.mark.parametrize(**harness.numeric_cases(debug_specs.SPECS))
def test_numeric(spec, order):
  harness.check_numeric(spec, order)


@pytest.fixture
def ref_variables(monkeypatch):
  """Makes the harness's variable inputs reference variables."""
  monkeypatch.setattr(harness, "_input", lambda spec, value: (
      tf.compat.v1.Variable(value, use_resource=False)))


@pytest.mark.parametrize(**harness.cases(debug_specs.REF_SPECS))
def test_ref_matches_tf(spec, dtype, ref_variables):
  del ref_variables
  harness.check_matches_tf(spec, dtype)


@pytest.mark.parametrize(**harness.numeric_cases(debug_specs.REF_SPECS))
def test_ref_numeric(spec, order, ref_variables):
  del ref_variables
  harness.check_numeric(spec, order)


@pytest.mark.parametrize("ref", [False, True], ids=["tensor", "ref"])
def test_gradients_debugger_records_the_gradient(ref):
  """The GradientsDebugger that inserted the identity gets our gradient."""
  with tf.Graph().as_default():
    x = (tf.compat.v1.Variable(np.ones(3), use_resource=False) if ref
         else tf.constant(np.ones(3)))
    debugger = debug_gradients.GradientsDebugger()
    y = debugger.identify_gradient(x) * 3.0
    with debugger:  # the active debugger records even when others exist
      (grad,) = tfgrad.gradients(y, [x], strict=True)
    assert debugger.gradient_tensor(x) is grad
