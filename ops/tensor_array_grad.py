"""Gradient rules for TensorArray (V3) ops.

A TensorArray's gradient lives in a second TensorArray that TensorArrayGradV3
attaches to the forward one: ops that read from the forward array write
their gradient into it, ops that wrote into the forward array read theirs
back out. Writes into a gradient array add up, so several reads of one entry
accumulate. The gradient array is keyed by a `source` string naming the
gradients call, so separate calls over one forward graph never share an
accumulator. Flow tensors carry the ordering: a reader's rule returns the
flow of its gradient write, which a writer's rule receives as its flow
gradient, so every gradient write happens before the gradient read.

TensorArray V1 and V2 ops can no longer be added to a graph; their read and
write ops share the V3 rules (see the end of this file).
"""

import tensorflow as tf

from tfgrad.registry import RegisterGradient

from tfgrad.ops.registrars import def_not_differentiable

from tfgrad.emit import raw


def _source():
  """The gradients call this rule runs in: the current name scope up to its
  last component that starts with "gradients"."""
  parts = tf.compat.v1.get_default_graph().get_name_scope().split("/")
  marks = [i for i, p in enumerate(parts) if p.startswith("gradients")]
  if not marks:
    raise ValueError(
        "TensorArray gradients must be built inside a gradients call whose "
        "name starts with 'gradients'; the name scope is "
        f"'{'/'.join(parts)}'")
  return "/".join(parts[:marks[-1] + 1])


def _grad_array(handle, flow):
  """(handle, flow) of `handle`'s gradient TensorArray for this call; the
  flow waits for the gradient array to exist."""
  grad_handle, _ = raw.TensorArrayGradV3(handle=handle, flow_in=flow,
                                         source=_source())
  with tf.control_dependencies([grad_handle]):
    return grad_handle, raw.Identity(input=flow)


def _after(op, flow_grad):
  """`flow_grad`, ordered after the forward write `op` has run."""
  with tf.control_dependencies([op.outputs[0]]):
    return tf.identity(flow_grad)


def _dense(g):
  return tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g


# ----- Not differentiable -----

def_not_differentiable(
    "TensorArray", "TensorArrayGrad", "TensorArraySize", "TensorArrayClose",
    "TensorArrayV2", "TensorArrayGradV2", "TensorArraySizeV2",
    "TensorArrayCloseV2",
    "TensorArrayV3", "TensorArrayGradV3", "TensorArrayGradWithShape",
    "TensorArraySizeV3", "TensorArrayCloseV3")


# ----- Reads: write the gradient into the gradient array -----


@RegisterGradient("TensorArrayReadV3")
def _read_grad(op, grad):
  """grad is written at the read index; returns that write's flow."""
  handle, index, flow = op.inputs
  grad_handle, grad_flow = _grad_array(handle, flow)
  written = raw.TensorArrayWriteV3(handle=grad_handle, index=index,
                                   value=_dense(grad), flow_in=grad_flow)
  return None, None, written


@RegisterGradient("TensorArrayGatherV3")
def _gather_grad(op, grad):
  """grad's rows are scattered to the gathered indices."""
  handle, indices, flow = op.inputs
  grad_handle, grad_flow = _grad_array(handle, flow)
  written = raw.TensorArrayScatterV3(handle=grad_handle, indices=indices,
                                     value=_dense(grad), flow_in=grad_flow)
  return None, None, written


@RegisterGradient("TensorArrayConcatV3")
def _concat_grad(op, grad, unused_lengths_grad):
  """grad is split back into pieces of the concatenated lengths."""
  handle, flow = op.inputs
  grad_handle, grad_flow = _grad_array(handle, flow)
  written = raw.TensorArraySplitV3(handle=grad_handle, value=_dense(grad),
                                   lengths=op.outputs[1], flow_in=grad_flow)
  return None, written


# ----- Writes: read the gradient back out of the gradient array -----


@RegisterGradient("TensorArrayWriteV3")
def _write_grad(op, flow_grad):
  """d value = the gradient array's entry at the written index."""
  handle, index, _, _ = op.inputs
  flow_grad = _after(op, flow_grad)
  grad_handle, grad_flow = _grad_array(handle, flow_grad)
  value_grad = raw.TensorArrayReadV3(handle=grad_handle, index=index,
                                     flow_in=grad_flow, dtype=op.get_attr("T"))
  return None, None, value_grad, flow_grad


@RegisterGradient("TensorArrayScatterV3")
def _scatter_grad(op, flow_grad):
  """d value = the gradient array's entries at the scattered indices."""
  handle, indices, _, _ = op.inputs
  flow_grad = _after(op, flow_grad)
  grad_handle, grad_flow = _grad_array(handle, flow_grad)
  value_grad = raw.TensorArrayGatherV3(handle=grad_handle, indices=indices,
                                       flow_in=grad_flow,
                                       dtype=op.get_attr("T"))
  return None, None, value_grad, flow_grad


@RegisterGradient("TensorArraySplitV3")
def _split_grad(op, flow_grad):
  """d value = the gradient array's entries concatenated."""
  handle = op.inputs[0]
  flow_grad = _after(op, flow_grad)
  grad_handle, grad_flow = _grad_array(handle, flow_grad)
  value_grad, _ = raw.TensorArrayConcatV3(handle=grad_handle,
                                          flow_in=grad_flow,
                                          dtype=op.get_attr("T"))
  return None, value_grad, None, flow_grad


# ----- Legacy names -----

# TensorArray{Read,Write,Gather,Scatter,Concat,Split} and their V2 forms are
# older names of the V3 ops with the same inputs, outputs and semantics; new
# graphs cannot contain them, but imported ones are differentiated alike.
for _rule, _name in ((_read_grad, "TensorArrayRead"),
                     (_gather_grad, "TensorArrayGather"),
                     (_concat_grad, "TensorArrayConcat"),
                     (_write_grad, "TensorArrayWrite"),
                     (_scatter_grad, "TensorArrayScatter"),
                     (_split_grad, "TensorArraySplit")):
  RegisterGradient(_name)(_rule)
  RegisterGradient(_name + "V2")(_rule)
del _rule, _name
