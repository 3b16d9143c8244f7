"""tfgrad: a drop-in, TensorFlow-compatible implementation of tf.gradients.

    import tfgrad
    grads = tfgrad.gradients(loss, [w, b])   # inside tf.function / tf.Graph
    tfgrad.install()                         # or: make tf.gradients use it

Gradient rules live in `tfgrad.ops` (the `ops/` folder of a checkout);
TF's registry is the fallback for op types without a tfgrad rule.
"""

import importlib.util
import os
import sys

try:
  import tensorflow as _tf
except ImportError as e:
  raise ImportError(
      "tfgrad needs TensorFlow >= 2.16, which is not a hard dependency (so "
      "that an existing tensorflow, tensorflow-cpu or tf-nightly is never "
      "doubled): install one, e.g. `pip install tfgrad[tensorflow]`") from e
if tuple(int(p) for p in _tf.__version__.split(".")[:2]) < (2, 16):
  raise ImportError(f"tfgrad needs TensorFlow >= 2.16, found {_tf.__version__}")

from tfgrad.registry import NoGradient
from tfgrad.registry import NotDifferentiable
from tfgrad.registry import RegisterGradient
from tfgrad.registry import UseTFGradient
from tfgrad.aggregate import AggregationMethod
from tfgrad.api import gradients
from tfgrad.api import strict_mode
from tfgrad.remat import explain_checkpoints
from tfgrad.remat_select import MemoryBudget
from tfgrad.explain import explain
from tfgrad.gradient_check import check_gradients
from tfgrad.gradient_check import GradientCheckError
from tfgrad.gradient_check import GradientCheckReport
from tfgrad.higher_order import batch_jacobian
from tfgrad.higher_order import hessian_vector_product
from tfgrad.higher_order import hessians
from tfgrad.higher_order import jacobian
from tfgrad.higher_order import jvp
from tfgrad.install import install
from tfgrad.install import installed
from tfgrad.install import uninstall
from tfgrad import compat

__version__ = "0.1.0"


def _import_rules():
  """Imports `tfgrad.ops`, the single place where rules register.

  An installed package has it at tfgrad/ops; a source checkout (and Bazel's
  runfiles) keep it as the top-level `ops/` folder beside `tfgrad/`, which is
  loaded under the name `tfgrad.ops` so it never appears as a bare `ops`.
  """
  if importlib.util.find_spec("tfgrad.ops") is None:
    folder = os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "ops")
    spec = importlib.util.spec_from_file_location(
        "tfgrad.ops", os.path.join(folder, "__init__.py"),
        submodule_search_locations=[folder])
    module = importlib.util.module_from_spec(spec)
    sys.modules["tfgrad.ops"] = module
    spec.loader.exec_module(module)
  else:
    importlib.import_module("tfgrad.ops")


_import_rules()
from tfgrad import ops  # pylint: disable=g-import-not-at-top,wrong-import-position
