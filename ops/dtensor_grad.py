"""Gradient rules for DTensor layout ops (TF's `dtensor/python/api.py`).

These ops are absent from `tf.raw_ops`: TF has no public way to build them,
so the rules build their adjoints through TF's generated op wrappers
(`gen_dtensor_ops`). Each op moves a tensor to another layout or mesh
without changing its values, so its adjoint moves the gradient back to the
layout or mesh of the forward input. Layout-donor inputs get None.
"""

from tensorflow.dtensor.python import gen_dtensor_ops

from tfgrad.registry import RegisterGradient


# ----- Layout changes -----


@RegisterGradient("Relayout")
def _relayout_grad(op, grad):
  """grad, laid out like the forward input."""
  return gen_dtensor_ops.relayout_like(grad, layout_input=op.inputs[0])


@RegisterGradient("RelayoutLike")
def _relayout_like_grad(op, grad):
  """grad, laid out like the forward input; none for the layout donor."""
  return gen_dtensor_ops.relayout_like(grad, layout_input=op.inputs[0]), None


# ----- Mesh copies -----


@RegisterGradient("CopyToMesh")
def _copy_to_mesh_grad(op, grad):
  """grad, copied back to the forward input's mesh."""
  return gen_dtensor_ops.copy_to_mesh_grad(grad, forward_input=op.inputs[0])


@RegisterGradient("CopyToMeshGrad")
def _copy_to_mesh_grad_grad(op, grad):
  """grad, copied back to the mesh of the incoming gradient; none for the
  mesh donor."""
  back = gen_dtensor_ops.copy_to_mesh_grad(grad, forward_input=op.inputs[0])
  return back, None
