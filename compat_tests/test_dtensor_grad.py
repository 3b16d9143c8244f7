"""ops/dtensor_grad.py: every spec against stock TF (structure only)."""

import pytest

from tfgrad.ops import dtensor_grad  # noqa: F401
from compat_tests import harness
from compat_tests import dtensor_specs


@pytest.mark.parametrize(**harness.cases(dtensor_specs.SPECS))
def test_matches_tf(spec, dtype):
  harness.check_matches_tf(spec, dtype)
