"""ops/list_grad.py: every spec against stock TF and finite differences."""

import pytest

from compat_tests import harness
from compat_tests import list_specs


@pytest.mark.parametrize(**harness.cases(list_specs.SPECS))
def test_matches_tf(spec, dtype):
  harness.check_matches_tf(spec, dtype)


@pytest.mark.parametrize(**harness.numeric_cases(list_specs.SPECS))
def test_numeric(spec, order):
  harness.check_numeric(spec, order)
