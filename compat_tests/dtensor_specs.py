"""Specs for ops/dtensor_grad.py rules.

DTensor's layout ops only run on a DTensor device, so every spec compares
the gradient graph's structure with stock TF without running it.
"""

from tensorflow.dtensor.python import gen_dtensor_ops

from compat_tests.spec import Spec

_NOTE = "DTensor op without a plain CPU kernel: graph structure compared only"
_C = ("float64", "float32", "complex128")
_MESH = "|x=1|0|0|/job:localhost/replica:0/task:0/device:CPU:0"
_LAYOUT = f"sharding_specs:unsharded,x, mesh:{_MESH}"


def _relayout(x):
  return gen_dtensor_ops.relayout(x, layout=_LAYOUT)


def _relayout_like(x, donor):
  return gen_dtensor_ops.relayout_like(x, layout_input=donor)


def _copy_to_mesh(x):
  return gen_dtensor_ops.copy_to_mesh(x, mesh=_MESH)


def _copy_to_mesh_grad(grad, forward_input):
  return gen_dtensor_ops.copy_to_mesh_grad(grad, forward_input=forward_input)


SPECS = [
    Spec("Relayout", _relayout, [(2, 3)], dtypes=_C, runs=False, order=0,
         note=_NOTE),
    Spec("RelayoutLike", _relayout_like, [(2, 3), (2, 3)], dtypes=_C,
         runs=False, order=0, note=_NOTE),
    Spec("RelayoutLike", _relayout_like, [(), (4,)], "scalar", runs=False,
         order=0, note=_NOTE),
    Spec("CopyToMesh", _copy_to_mesh, [(2, 3)], dtypes=_C, runs=False,
         order=0, note=_NOTE),
    Spec("CopyToMeshGrad", _copy_to_mesh_grad, [(2, 3), (2, 3)], dtypes=_C,
         runs=False, order=0, note=_NOTE),
]
