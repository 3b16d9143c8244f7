"""ops/tensor_array_grad.py: every spec against stock TF and finite
differences.

Stock TF's TensorArray rules build their gradient arrays through
tf.TensorArray, which in a TF2 graph is TensorList-backed and refuses an
existing handle; they work with control flow v1, which these tests enable.
"""

import pytest
from tensorflow.python.ops import control_flow_util

from compat_tests import harness
from compat_tests import tensor_array_specs


@pytest.fixture(autouse=True)
def _control_flow_v1(monkeypatch):
  monkeypatch.setattr(control_flow_util, "ENABLE_CONTROL_FLOW_V2", False)


@pytest.mark.parametrize(**harness.cases(tensor_array_specs.SPECS))
def test_matches_tf(spec, dtype):
  harness.check_matches_tf(spec, dtype)


@pytest.mark.parametrize(**harness.numeric_cases(tensor_array_specs.SPECS))
def test_numeric(spec, order):
  harness.check_numeric(spec, order)
