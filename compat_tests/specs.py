"""The rule table: every spec of every family, in one list."""

from compat_tests import array_specs
from compat_tests import math_specs
from compat_tests import nn_specs
from compat_tests import resource_variable_specs

SPECS = (array_specs.SPECS + math_specs.SPECS + nn_specs.SPECS
         + resource_variable_specs.SPECS)
