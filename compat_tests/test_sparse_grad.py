"""ops/sparse_grad.py: every spec against stock TF and finite differences."""

import pytest

from compat_tests import harness
from compat_tests import sparse_specs


@pytest.mark.parametrize(**harness.cases(sparse_specs.SPECS))
def test_matches_tf(spec, dtype):
  harness.check_matches_tf(spec, dtype)


@pytest.mark.parametrize(**harness.numeric_cases(sparse_specs.SPECS))
def test_numeric(spec, order):
  harness.check_numeric(spec, order)


@pytest.mark.parametrize(
    **harness.numeric_cases(sparse_specs.NUMERIC_ONLY_SPECS))
def test_numeric_only(spec, order):
  harness.check_numeric(spec, order)


@pytest.mark.parametrize("op_type", sparse_specs.TF_RAISES)
def test_tf_raises(op_type):
  """Each TF gap the numeric-only specs document is real (until TF fills it)."""
  spec = next(s for s in sparse_specs.NUMERIC_ONLY_SPECS if s.op == op_type)
  harness.check_tf_fails(spec, (NotImplementedError, TypeError))
