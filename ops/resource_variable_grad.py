"""Gradient rules for resource-variable ops."""

from tfgrad.registry import RegisterGradient


@RegisterGradient("ReadVariableOp")
def _read_variable_grad(op, grad):
  """The handle receives the read's gradient unchanged."""
  del op
  return grad
