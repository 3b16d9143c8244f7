"""The rule table: every spec of every family, in one list."""

from compat_tests import array_specs
from compat_tests import fft_specs
from compat_tests import linalg_specs
from compat_tests import math_specs
from compat_tests import nn_specs
from compat_tests import random_specs
from compat_tests import resource_variable_specs

SPECS = (array_specs.SPECS + fft_specs.SPECS + linalg_specs.SPECS
         + math_specs.SPECS + nn_specs.SPECS + random_specs.SPECS
         + resource_variable_specs.SPECS)

# Rules whose value cannot be compared with stock TF (TF has no gradient for
# the op, or a wrong one): checked by finite differences only.
NUMERIC_ONLY_SPECS = fft_specs.NUMERIC_ONLY_SPECS + nn_specs.NUMERIC_ONLY_SPECS

ALL_SPECS = SPECS + NUMERIC_ONLY_SPECS
