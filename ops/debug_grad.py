"""Gradient rules for pass-through ops: debugging and printing identities,
reference identities, and the ops that wrap values in (and unwrap them from)
variant containers (optionals, encoded composite tensors).

An identity passes its gradient through; a wrapping op's gradient is the
matching unwrapping op applied to the gradient, and vice versa.
"""

import tensorflow as tf

from tfgrad.registry import RegisterGradient

from tfgrad.emit import raw

_DEBUG_TAG = "gradient_debug_"


def _debugger_of(op):
  """(GradientsDebugger, watched tensor name) that created `op`, or None.

  tfdbg's GradientsDebugger names each op it inserts
  `<scope>/<op>_<slot>/gradient_debug_<uuid>` and keeps itself in a module
  registry keyed by that uuid; there is no public lookup."""
  parts = op.name.split("/")
  if len(parts) < 2 or not parts[-1].startswith(_DEBUG_TAG):
    return None
  try:
    from tensorflow.python.debug.lib import debug_gradients  # pylint: disable=g-import-not-at-top
    debuggers = debug_gradients._gradient_debuggers  # pylint: disable=protected-access
  except (ImportError, AttributeError):
    return None
  uuid = parts[-1][len(_DEBUG_TAG):].split("_")[0]
  base, _, slot = parts[-2].rpartition("_")
  debugger = debuggers.get(uuid)
  if debugger is None:
    return None
  return debugger, "/".join(parts[:-2] + [base]) + ":" + slot


# ----- Identities -----


@RegisterGradient("DebugGradientIdentity")
def _debug_gradient_identity_grad(op, grad):
  """Identity; the gradient is handed to the tfdbg GradientsDebugger that
  inserted the op, which records it for its watched tensor."""
  found = _debugger_of(op)
  if found is not None:
    debugger, watched = found
    debugger.register_gradient_tensor(watched, grad)
  return grad


RegisterGradient("DebugGradientRefIdentity")(_debug_gradient_identity_grad)


@RegisterGradient("DebugIdentityV2")
def _debug_identity_v2_grad(unused_op, grad):
  """Identity: the op only dumps its input."""
  return grad


@RegisterGradient("RefIdentity")
def _ref_identity_grad(unused_op, grad):
  """Identity on the referenced value."""
  return grad


@RegisterGradient("Print")
def _print_grad(op, grad):
  """Identity on the passed-through input; the printed data gets None."""
  return [grad] + [None] * (len(op.inputs) - 1)


# ----- Variant containers -----


@RegisterGradient("OptionalFromValue")
def _optional_from_value_grad(op, grad):
  """The components of the optional gradient."""
  return raw.OptionalGetValue(
      optional=grad, output_types=[t.dtype for t in op.inputs],
      output_shapes=[t.shape for t in op.inputs])


@RegisterGradient("OptionalGetValue")
def _optional_get_value_grad(unused_op, *grads):
  """The component gradients wrapped in an optional."""
  return raw.OptionalFromValue(components=list(grads))


@RegisterGradient("CompositeTensorVariantFromComponents")
def _composite_tensor_variant_from_components_grad(op, grad):
  """The components of the encoded gradient."""
  return raw.CompositeTensorVariantToComponents(
      encoded=grad, metadata=op.get_attr("metadata"),
      Tcomponents=op.get_attr("Tcomponents"))


@RegisterGradient("CompositeTensorVariantToComponents")
def _composite_tensor_variant_to_components_grad(op, *grads):
  """The component gradients encoded; a component without one keeps its
  forward value (row partitions and other non-float parts)."""
  components = [o if g is None else g for o, g in zip(op.outputs, grads)]
  return raw.CompositeTensorVariantFromComponents(
      components=components, metadata=op.get_attr("metadata"))
