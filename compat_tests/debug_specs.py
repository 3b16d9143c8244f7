"""Specs for ops/debug_grad.py rules.

REF_SPECS take reference-typed inputs: test_debug_grad.py runs them with
each x a ref variable (`use_resource=False`), whose ref tensor feeds the op.
"""

import tensorflow as tf
from tensorflow.python.debug.lib import debug_gradients
from tensorflow.python.ops import composite_tensor_ops

from compat_tests.spec import Spec

raw = tf.raw_ops
_WITH_COMPLEX = ("float64", "float32", "complex128")


def _identify_gradient(x):
  return debug_gradients.GradientsDebugger().identify_gradient(x) * 2.0


def _debug_identity_v2(x):
  return raw.DebugIdentityV2(input=x, tfdbg_context_id="ctx", op_name="x",
                             output_slot=0, tensor_debug_mode=2,
                             debug_urls=[]) * 2.0


def _print(x, y):
  return tf.compat.v1.Print(x, [x, y], message="x, y:") * y


def _optional_round_trip(x, y):
  optional = tf.experimental.Optional.from_value((x, {"y": y}))
  a, b = optional.get_value()
  return [a * b["y"], b["y"]]


def _ragged_variant_round_trip(values):
  """A ragged tensor encoded as a variant and decoded again."""
  rt = tf.RaggedTensor.from_row_splits(values, tf.constant([0, 2, 2, 5],
                                                           tf.int64))
  encoded = composite_tensor_ops.composite_tensor_to_variants(rt)
  decoded = composite_tensor_ops.composite_tensor_from_variant(
      encoded, rt._type_spec)  # pylint: disable=protected-access
  return decoded.flat_values * values


SPECS = [
    Spec("DebugGradientIdentity", _identify_gradient, [(2, 3)],
         dtypes=_WITH_COMPLEX),
    Spec("DebugIdentityV2", _debug_identity_v2, [(2, 3)],
         dtypes=_WITH_COMPLEX),
    Spec("Print", _print, [(2, 3), (2, 3)], dtypes=_WITH_COMPLEX),
    Spec("Print", _print, [(), (3,)], "scalar"),
    Spec("OptionalFromValue", _optional_round_trip, [(2, 3), (3,)],
         dtypes=_WITH_COMPLEX),
    Spec("OptionalGetValue", _optional_round_trip, [(), (2,)], "scalar"),
    Spec("CompositeTensorVariantFromComponents", _ragged_variant_round_trip,
         [(5,)], dtypes=_WITH_COMPLEX),
    Spec("CompositeTensorVariantToComponents", _ragged_variant_round_trip,
         [(5,)]),
]

REF_SPECS = [
    Spec("RefIdentity", lambda x: raw.RefIdentity(input=x) * 2.0, [(2, 3)],
         variables=True),
    Spec("DebugGradientRefIdentity", _identify_gradient, [(2, 3)],
         variables=True),
]
