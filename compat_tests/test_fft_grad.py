"""ops/fft_grad.py: every spec against stock TF and finite differences."""

import pytest

from compat_tests import fft_specs
from compat_tests import harness


@pytest.mark.parametrize(**harness.cases(fft_specs.SPECS))
def test_matches_tf(spec, dtype):
  harness.check_matches_tf(spec, dtype)


@pytest.mark.parametrize(**harness.numeric_cases(fft_specs.SPECS))
def test_numeric(spec, order):
  harness.check_numeric(spec, order)


@pytest.mark.parametrize(**harness.numeric_cases(fft_specs.NUMERIC_ONLY_SPECS))
def test_numeric_only(spec, order):
  harness.check_numeric(spec, order)


@pytest.mark.parametrize("spec", fft_specs.NUMERIC_ONLY_SPECS,
                         ids=lambda s: s.id)
def test_tf_fails(spec):
  """Each TF failure the numeric-only specs document is real (until fixed)."""
  assert spec.op in fft_specs.TF_FAILS
  harness.check_tf_fails(spec, ValueError)
