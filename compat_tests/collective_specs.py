"""Specs for ops/collective_grad.py rules.

Collectives only run on TPU replicas, so every spec compares the gradient
graph's structure with stock TF without running it.
"""

import tensorflow as tf

from compat_tests.spec import Spec

raw = tf.raw_ops
_NOTE = "TPU collective without a CPU kernel: graph structure compared only"
_GROUP = [[0, 1]]


def _all_to_all(concat, split):
  def build(x):
    return raw.AllToAll(input=x, group_assignment=tf.constant(_GROUP),
                        concat_dimension=concat, split_dimension=split,
                        split_count=2)
  return build


def _collective_permute(x):
  return raw.CollectivePermute(
      input=x, source_target_pairs=tf.constant([[0, 1], [1, 0]]))


def _cross_replica_sum(x):
  return raw.CrossReplicaSum(input=x, group_assignment=tf.constant(_GROUP))


_F32 = ("float32",)

SPECS = [
    Spec("AllToAll", _all_to_all(0, 1), [(2, 4)], dtypes=_F32, runs=False,
         order=0, note=_NOTE),
    Spec("AllToAll", _all_to_all(1, 0), [(4, 2, 3)], "swapped", dtypes=_F32,
         runs=False, order=0, note=_NOTE),
    Spec("CollectivePermute", _collective_permute, [(2, 3)], runs=False,
         order=0, note=_NOTE),
    Spec("CrossReplicaSum", _cross_replica_sum, [(2, 3)], dtypes=_F32,
         runs=False, order=0, note=_NOTE),
]
