"""Registrars for the common rule shapes, so a formula is one line.

    def_unary("Sin", lambda x, y, g: raw.Mul(x=g, y=raw.Cos(x=x)))
    def_binary("Mul", dx=lambda x, y, g: raw.Mul(x=g, y=y),
               dy=lambda x, y, g: raw.Mul(x=x, y=g))

Formulas build their ops with `tfgrad.emit.raw`; x and y are Tensors, g
may be an IndexedSlices (which `raw` densifies). For complex dtypes the
formula receives conj(x) and conj(y) (for a holomorphic f, TF's convention
is grad * conj(f'(x))), so formulas are written as for real numbers.
`def_binary` sums each partial back to its
operand's shape (broadcasting), and skips partials given as None.
`def_unary` and `def_binary` build their formulas under
`emit.after(grad)`, so factors that depend on x (and y) alone are computed
once the gradient is there.
"""

from tfgrad import emit
from tfgrad.registry import RegisterGradient
from tfgrad.registry import passes_gradients_through

from tfgrad.ops import _helpers


def def_unary(op_type, formula):
  """Registers `formula(x, y, g) -> dx` for a one-input, one-output op,
  where y is the op's output (reuse it instead of recomputing f(x))."""

  def rule(op, grad):
    x = _helpers.conj(op.inputs[0])
    y = _helpers.conj(op.outputs[0])
    with emit.after(grad):
      return formula(x, y, grad)

  rule.__name__ = f"_{op_type.lower()}_grad"
  rule.__doc__ = f"Gradient of {op_type} from a one-line formula."
  RegisterGradient(op_type)(rule)
  return rule


def def_binary(op_type, dx, dy):
  """Registers the partials `dx(x, y, g)`, `dy(x, y, g)` of a broadcasting
  binary op; either may be None (that input gets no gradient). A partial
  is not built for an input backprop does not need."""

  def rule(op, grad):
    x, y = op.inputs[0], op.inputs[1]
    with emit.after(grad):
      cx, cy = _helpers.conj(x), _helpers.conj(y)
      gx = dx(cx, cy, grad) if dx and _helpers.needs_grad(op, 0) else None
      gy = dy(cx, cy, grad) if dy and _helpers.needs_grad(op, 1) else None
      return _helpers.unbroadcast_elementwise(gx, x, gy, y)

  rule.__name__ = f"_{op_type.lower()}_grad"
  rule.__doc__ = f"Gradient of broadcasting binary {op_type} from formulas."
  RegisterGradient(op_type)(rule)
  return rule


def def_linear(op_type):
  """Registers the identity rule: each input gets the output's gradient."""

  def rule(op, *grads):
    return list(grads) * len(op.inputs) if len(grads) == 1 else list(grads)

  rule.__name__ = f"_{op_type.lower()}_grad"
  RegisterGradient(op_type)(passes_gradients_through(rule))
  return rule


def def_not_differentiable(*op_types):
  """Declares each of `op_types` not differentiable."""
  from tfgrad.registry import NotDifferentiable  # pylint: disable=g-import-not-at-top
  for op_type in op_types:
    NotDifferentiable(op_type)
