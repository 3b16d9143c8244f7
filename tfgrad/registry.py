"""tfgrad's gradient-rule registry, keyed by op-type string.

This module is a leaf: it imports nothing else from tfgrad, so rule modules
and the engine can both depend on it without cycles. A rule is a callable
`rule(op, *output_grads) -> list of input grads`, the same contract as a
function registered with `tf.RegisterGradient`. `None` stored as a rule means
"declared not differentiable": backprop treats the op as a constant.
"""

import inspect
import traceback

_NOT_DIFFERENTIABLE = None


class _UseTF:
  """Marker rule: tfgrad deliberately uses TF's registered gradient."""

  def __repr__(self):
    return "USE_TF_GRADIENT"


USE_TF_GRADIENT = _UseTF()


class Registry:
  """A map from op type to gradient rule that refuses silent overwrites."""

  def __init__(self, kind):
    self._kind = kind
    self._rules = {}
    self._origins = {}

  def register(self, op_type, rule, origin):
    """Adds `rule` for `op_type`; `origin` says where it was registered."""
    if not isinstance(op_type, str):
      raise TypeError(f"{self._kind} key must be a string, got {op_type!r} "
                      f"of type {type(op_type).__name__}")
    if op_type in self._rules:
      raise KeyError(f"Registering two {self._kind}s for op type "
                     f"'{op_type}': the first was registered at "
                     f"{self._origins[op_type]}, the second at {origin}")
    self._rules[op_type] = rule
    self._origins[op_type] = origin

  def unregister(self, op_type):
    """Removes `op_type` (for tests and interactive use); KeyError if absent."""
    del self._rules[op_type]
    del self._origins[op_type]

  def lookup(self, op_type):
    """Returns the rule for `op_type` (None if not differentiable).

    Raises LookupError when nothing is registered for the type.
    """
    try:
      return self._rules[op_type]
    except KeyError:
      raise LookupError(f"No {self._kind} registered in tfgrad for op type "
                        f"'{op_type}'") from None

  def get(self, op_type, default=None):
    return self._rules.get(op_type, default)

  def origin(self, op_type):
    return self._origins[op_type]

  def __contains__(self, op_type):
    return op_type in self._rules

  def __len__(self):
    return len(self._rules)

  def keys(self):
    return sorted(self._rules)

  def differentiable_keys(self):
    """Types with a tfgrad rule of their own."""
    return sorted(k for k, r in self._rules.items()
                  if r is not None and r is not USE_TF_GRADIENT)

  def use_tf_keys(self):
    """Types declared with `UseTFGradient`."""
    return sorted(k for k, r in self._rules.items() if r is USE_TF_GRADIENT)

  def not_differentiable_keys(self):
    return sorted(k for k, r in self._rules.items() if r is None)


GRADIENTS = Registry("gradient")


def _caller_origin(depth):
  frame = traceback.extract_stack(limit=depth + 1)[0]
  return f"{frame.filename}:{frame.lineno}"


class RegisterGradient:
  """Decorator registering a gradient rule for an op type with tfgrad.

  Same shape as `tf.RegisterGradient`:

      @tfgrad.RegisterGradient("Sin")
      def _sin_grad(op, grad):
        return grad * tf.cos(op.inputs[0])
  """

  def __init__(self, op_type):
    if not isinstance(op_type, str):
      raise TypeError("op_type must be a string")
    self._op_type = op_type

  def __call__(self, rule):
    try:
      origin = f"{inspect.getsourcefile(rule)}:{rule.__code__.co_firstlineno}"
    except (TypeError, AttributeError):
      origin = _caller_origin(2)
    GRADIENTS.register(self._op_type, rule, origin)
    return rule


def NotDifferentiable(op_type):  # pylint: disable=invalid-name
  """Declares that ops of `op_type` have no gradient (treated as constants)."""
  if not isinstance(op_type, str):
    raise TypeError("op_type must be a string")
  GRADIENTS.register(op_type, _NOT_DIFFERENTIABLE, _caller_origin(2))


def UseTFGradient(op_type):  # pylint: disable=invalid-name
  """Declares that tfgrad uses TF's registered gradient for `op_type` on
  purpose, also in strict mode. Meant for rules that are plumbing around
  tfgrad's own engine (functional control flow, whose TF rules differentiate
  branch and body graphs through the entry point tfgrad routes to itself)."""
  if not isinstance(op_type, str):
    raise TypeError("op_type must be a string")
  GRADIENTS.register(op_type, USE_TF_GRADIENT, _caller_origin(2))


# TF spells it both ways.
NoGradient = NotDifferentiable


def takes_none_for_unreached_outputs(rule):
  """Marks `rule` as handling None for outputs whose gradient nothing
  reached. Unmarked rules get zeros there, as TF's rules expect; a rule
  that ignores such outputs (batch norm's statistics, a loss's second
  output) is marked so that no dead zeros op is built for them."""
  rule.takes_none_for_unreached_outputs = True
  return rule


def passes_gradients_through(rule):
  """Marks `rule` as handing its op's output gradients to the inputs
  unchanged (Identity, ReadVariableOp): it builds no op, so backprop calls
  it without entering the op's name scope and colocation."""
  rule.passes_gradients_through = True
  return rule


def takes_known_gradients(rule):
  """Marks `rule` as accepting `emit.Known` output gradients (values known
  at construction time, such as the default ones seed) and computing its
  result from them in numpy where it can. Unmarked rules get constants."""
  rule.takes_known_gradients = True
  return rule
