"""ops/collective_grad.py: every spec against stock TF (structure only)."""

import pytest

from compat_tests import harness
from compat_tests import collective_specs


@pytest.mark.parametrize(**harness.cases(collective_specs.SPECS))
def test_matches_tf(spec, dtype):
  harness.check_matches_tf(spec, dtype)


