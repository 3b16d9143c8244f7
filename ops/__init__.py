"""tfgrad's gradient rules, one module per op family (TF's file names).

Importing this package registers every rule with `tfgrad.registry`; it is
imported once, by `tfgrad/__init__.py`. In a source checkout this folder is
the top-level `ops/`; installed, it is `tfgrad.ops`.
"""

from tfgrad.ops import array_grad  # noqa: F401
from tfgrad.ops import call_grad  # noqa: F401
from tfgrad.ops import collective_grad  # noqa: F401
from tfgrad.ops import cond_grad  # noqa: F401
from tfgrad.ops import control_flow_grad  # noqa: F401
from tfgrad.ops import ctc_grad  # noqa: F401
from tfgrad.ops import data_flow_grad  # noqa: F401
from tfgrad.ops import debug_grad  # noqa: F401
from tfgrad.ops import dtensor_grad  # noqa: F401
from tfgrad.ops import fft_grad  # noqa: F401
from tfgrad.ops import forward_rules  # noqa: F401
from tfgrad.ops import image_grad  # noqa: F401
from tfgrad.ops import linalg_grad  # noqa: F401
from tfgrad.ops import list_grad  # noqa: F401
from tfgrad.ops import manip_grad  # noqa: F401
from tfgrad.ops import math_grad  # noqa: F401
from tfgrad.ops import nn_grad  # noqa: F401
from tfgrad.ops import not_differentiable  # noqa: F401
from tfgrad.ops import ragged_grad  # noqa: F401
from tfgrad.ops import random_grad  # noqa: F401
from tfgrad.ops import resource_variable_grad  # noqa: F401
from tfgrad.ops import rnn_grad  # noqa: F401
from tfgrad.ops import sparse_csr_matrix_grad  # noqa: F401
from tfgrad.ops import sparse_grad  # noqa: F401
from tfgrad.ops import state_grad  # noqa: F401
from tfgrad.ops import tensor_array_grad  # noqa: F401
from tfgrad.ops import v1_control_flow_grad  # noqa: F401
from tfgrad.ops import while_grad  # noqa: F401
from tfgrad.ops import xla_grad  # noqa: F401
