"""The rule table: every spec of every family, in one list."""

from compat_tests import array_specs
from compat_tests import call_specs
from compat_tests import collective_specs
from compat_tests import cond_specs
from compat_tests import control_flow_specs
from compat_tests import ctc_specs
from compat_tests import data_flow_specs
from compat_tests import debug_specs
from compat_tests import dtensor_specs
from compat_tests import fft_specs
from compat_tests import image_specs
from compat_tests import linalg_specs
from compat_tests import list_specs
from compat_tests import manip_specs
from compat_tests import math_specs
from compat_tests import nn_specs
from compat_tests import ragged_specs
from compat_tests import random_specs
from compat_tests import resource_variable_specs
from compat_tests import rnn_specs
from compat_tests import sparse_csr_matrix_specs
from compat_tests import sparse_specs
from compat_tests import state_specs
from compat_tests import tensor_array_specs
from compat_tests import xla_specs

SPECS = (array_specs.SPECS + call_specs.SPECS + collective_specs.SPECS
         + cond_specs.SPECS
         + control_flow_specs.SPECS + ctc_specs.SPECS
         + data_flow_specs.SPECS + debug_specs.SPECS + dtensor_specs.SPECS
         + fft_specs.SPECS
         + image_specs.SPECS + linalg_specs.SPECS + list_specs.SPECS
         + manip_specs.SPECS
         + math_specs.SPECS + nn_specs.SPECS + ragged_specs.SPECS
         + random_specs.SPECS + resource_variable_specs.SPECS
         + rnn_specs.SPECS + sparse_csr_matrix_specs.SPECS
         + sparse_specs.SPECS + state_specs.SPECS + tensor_array_specs.SPECS
         + xla_specs.SPECS)

# Rules whose value cannot be compared with stock TF (TF has no gradient for
# the op, or a wrong one): checked by finite differences only.
NUMERIC_ONLY_SPECS = (array_specs.NUMERIC_ONLY_SPECS
                      + fft_specs.NUMERIC_ONLY_SPECS + nn_specs.NUMERIC_ONLY_SPECS
                      + rnn_specs.NUMERIC_ONLY_SPECS
                      + sparse_specs.NUMERIC_ONLY_SPECS)

# Rules on ref-typed tensors (TF1 variables): test_debug_grad.py runs them
# with the ref variables they need.
REF_SPECS = debug_specs.REF_SPECS

ALL_SPECS = SPECS + NUMERIC_ONLY_SPECS + REF_SPECS
