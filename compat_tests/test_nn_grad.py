"""ops/nn_grad.py: every spec against stock TF and finite differences."""

import pytest

from compat_tests import harness
from compat_tests import nn_specs


@pytest.mark.parametrize(**harness.cases(nn_specs.SPECS))
def test_matches_tf(spec, dtype):
  harness.check_matches_tf(spec, dtype)


@pytest.mark.parametrize(**harness.numeric_cases(nn_specs.SPECS))
def test_numeric(spec, order):
  harness.check_numeric(spec, order)


@pytest.mark.parametrize(**harness.numeric_cases(nn_specs.NUMERIC_ONLY_SPECS))
def test_numeric_only(spec, order):
  harness.check_numeric(spec, order)


@pytest.mark.parametrize("op_type", nn_specs.TF_LACKS_GRADIENT)
def test_tf_lacks_gradient(op_type):
  """Each TF gap the numeric-only specs document is real (until TF fills it)."""
  spec = next(s for s in nn_specs.NUMERIC_ONLY_SPECS if s.op == op_type)
  harness.check_tf_fails(spec, LookupError)
