"""ops/fft_grad.py: every spec against stock TF and finite differences."""

import numpy as np
import pytest
import tensorflow as tf

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
  with tf.Graph().as_default():
    xs = [tf.constant(np.ones(shape)) for shape in spec.shapes]
    with pytest.raises(ValueError):
      tf.gradients(spec.build(*xs), xs)
