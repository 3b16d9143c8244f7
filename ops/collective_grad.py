"""Gradient rules for cross-replica collectives (TF's tpu_ops.py).

Each collective is linear in its input, and its adjoint is another
collective over the same replicas: a sum stays a sum, a permutation runs
backwards, an all-to-all swaps its split and concat dimensions. The replica
assignment inputs get None.
"""

import tensorflow as tf

from tfgrad.registry import RegisterGradient

from tfgrad.emit import raw


@RegisterGradient("AllToAll")
def _all_to_all_grad(op, grad):
  """The all-to-all that splits where the forward one concatenated."""
  back = raw.AllToAll(input=grad, group_assignment=op.inputs[1],
                      concat_dimension=op.get_attr("split_dimension"),
                      split_dimension=op.get_attr("concat_dimension"),
                      split_count=op.get_attr("split_count"))
  return back, None


@RegisterGradient("CollectivePermute")
def _collective_permute_grad(op, grad):
  """The permutation with every (source, target) pair reversed."""
  pairs = tf.reverse(op.inputs[1], axis=[1])
  return raw.CollectivePermute(input=grad, source_target_pairs=pairs), None


@RegisterGradient("CrossReplicaSum")
def _cross_replica_sum_grad(op, grad):
  """A sum over the replica group is its own adjoint."""
  return raw.CrossReplicaSum(input=grad, group_assignment=op.inputs[1]), None
