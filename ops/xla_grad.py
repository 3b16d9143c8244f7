"""Gradient rules for XLA-only ops (TF's tf2xla `xla.py`, `xla_ops_grad.py`
and the XlaEinsum rule in `special_math_ops.py`).

These ops are absent from `tf.raw_ops`: TF has no public way to build them,
so the rules build their adjoints through TF's generated op wrappers
(`gen_xla_ops`). Sharding annotations are linear identities whose adjoint is
the same annotation; the SPMD shape changes are each other's adjoints.
XlaEinsum's adjoints conjugate the other operand, as for MatMul (TF's rule
does not, so its complex gradients differ).
"""

import tensorflow as tf
from tensorflow.compiler.tf2xla.ops import gen_xla_ops
from tensorflow.core.framework import attr_value_pb2

from tfgrad.registry import RegisterGradient


# ----- Compilation boundary -----


@RegisterGradient("XlaClusterOutput")
def _xla_cluster_output_grad(op, grad):
  """No gradient: differentiating through an xla.compile() output is refused."""
  del grad
  raise RuntimeError(
      f"Cannot differentiate through {op.name} (XlaClusterOutput): "
      "gradients of a graph built by xla.compile() must be computed inside "
      "the compiled computation, not across its outputs.")


# ----- Sharding annotations -----


@RegisterGradient("XlaSharding")
def _xla_sharding_grad(op, grad):
  """An identity annotation: grad carries the forward op's sharding."""
  sharding = op.get_attr("sharding")
  back = gen_xla_ops.xla_sharding(
      grad, sharding=sharding,
      unspecified_dims=op.get_attr("unspecified_dims"))
  # XLA reads a tensor's sharding from this node attribute; TF offers no
  # public way to set it.
  back.op._set_attr(  # pylint: disable=protected-access
      "_XlaSharding", attr_value_pb2.AttrValue(s=sharding))
  return back


@RegisterGradient("XlaSpmdFullToShardShape")
def _xla_spmd_full_to_shard_shape_grad(op, grad):
  """The shard-shaped grad goes back to the input's full shape."""
  return gen_xla_ops.xla_spmd_shard_to_full_shape(
      grad, manual_sharding=op.get_attr("manual_sharding"),
      full_shape=op.inputs[0].shape, dim=op.get_attr("dim"),
      unspecified_dims=op.get_attr("unspecified_dims"))


@RegisterGradient("XlaSpmdShardToFullShape")
def _xla_spmd_shard_to_full_shape_grad(op, grad):
  """The full-shaped grad goes back to the manual shard shape."""
  return gen_xla_ops.xla_spmd_full_to_shard_shape(
      grad, manual_sharding=op.get_attr("manual_sharding"),
      dim=op.get_attr("dim"), unspecified_dims=op.get_attr("unspecified_dims"))


# ----- Einsum -----


@RegisterGradient("XlaEinsum")
def _xla_einsum_grad(op, grad):
  """For "a,b->c": da = einsum("c,b->a", g, conj(b)), db likewise."""
  equation = op.get_attr("equation")
  if isinstance(equation, bytes):
    equation = equation.decode()
  operands, out = equation.split("->")
  left, right = operands.split(",")
  a, b = (tf.math.conj(t) for t in op.inputs)
  return (gen_xla_ops.xla_einsum(grad, b, equation=f"{out},{right}->{left}"),
          gen_xla_ops.xla_einsum(grad, a, equation=f"{out},{left}->{right}"))
