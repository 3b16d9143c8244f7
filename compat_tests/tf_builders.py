"""The proof that conds and calls are differentiated by tfgrad's own
builders: TF's `_GradientsHelper` raises, TF's registered rules for conds,
calls and SymbolicGradient are gone, as are the delayed-rewrite gradient
functions of graph-function calls; stock's gradients (taken before) and
tfgrad's (strict, taken under that) are compared. Shared by
test_cond_grad.py and test_call_grad.py."""

import contextlib

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops
from tensorflow.python.ops import gradients_util

import tfgrad
from compat_tests import differential

_TF_BUILDER_TYPES = ("If", "StatelessIf", "Case", "StatelessCase",
                     "PartitionedCall", "StatefulPartitionedCall",
                     "SymbolicGradient")


def _refuse(*args, **kwargs):
  raise AssertionError("TF's gradient builder was called")


@contextlib.contextmanager
def tf_builders_unavailable():
  """TF's `_GradientsHelper` raises and TF's registered rules for conds,
  calls and SymbolicGradient are gone, as are the delayed-rewrite
  gradient functions of graph-function calls; all restored after."""
  from tensorflow.python.eager.polymorphic_function import concrete_function  # pylint: disable=g-import-not-at-top
  registry = tf_ops.gradient_registry._registry  # pylint: disable=protected-access
  delayed = concrete_function._DelayedRewriteGradientFunctions  # pylint: disable=protected-access
  saved_rules = {k: registry[k] for k in _TF_BUILDER_TYPES if k in registry}
  saved_helper = gradients_util._GradientsHelper  # pylint: disable=protected-access
  saved_delayed = (delayed._rewrite_forward_and_call_backward,  # pylint: disable=protected-access
                   delayed.forward_backward)
  try:
    for k in saved_rules:
      del registry[k]
    gradients_util._GradientsHelper = _refuse  # pylint: disable=protected-access
    delayed._rewrite_forward_and_call_backward = _refuse  # pylint: disable=protected-access
    delayed.forward_backward = _refuse
    yield
  finally:
    registry.update(saved_rules)
    gradients_util._GradientsHelper = saved_helper  # pylint: disable=protected-access
    delayed._rewrite_forward_and_call_backward, delayed.forward_backward = (  # pylint: disable=protected-access
        saved_delayed)


def stock_then_ours_in_graph(build):
  """Stock's gradients first, then tfgrad's (strict) with TF's builders
  unavailable, in one graph; compared by `differential.assert_same`."""
  with tf.Graph().as_default() as graph:
    ys, xs = build()
    theirs = tf.gradients(ys, xs)
    with tf_builders_unavailable():
      ours = tfgrad.gradients(ys, xs, strict=True)
    with tf.compat.v1.Session(graph=graph) as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      values = differential._run(sess, ours + theirs)  # pylint: disable=protected-access
  differential.assert_same(ours, theirs, values[:len(ours)],
                           values[len(ours):])


def stock_then_ours_in_function(build):
  structure = {}

  def traced(engine, guard):
    @tf.function
    def run():
      differential.rewind_variables()
      ys, xs = build()
      with guard():
        grads = engine(ys, xs)
      structure[guard] = [differential.describe(g) for g in grads]
      return [differential._fetch(g) for g in grads]  # pylint: disable=protected-access
    return run.get_concrete_function()

  with differential.variables_kept_across_traces():
    theirs_fn = traced(tf.gradients, contextlib.nullcontext)
    ours_fn = traced(lambda ys, xs: tfgrad.gradients(ys, xs, strict=True),
                     tf_builders_unavailable)
    theirs, ours = theirs_fn(), ours_fn()
  assert (structure[tf_builders_unavailable]
          == structure[contextlib.nullcontext])
  assert len(ours) == len(theirs)
  for a, b in zip(ours, theirs):
    if a is None or b is None:
      assert a is None and b is None
    else:
      np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)


_TF_WHILE_TYPES = ("While", "StatelessWhile")
_TF_V1_LOOP_TYPES = ("Switch", "Merge", "Enter", "Exit", "NextIteration",
                     "RefSwitch", "RefMerge", "RefEnter", "RefExit",
                     "RefNextIteration")


@contextlib.contextmanager
def tf_loop_builders_unavailable():
  """On top of `tf_builders_unavailable`: TF's registered rules for While
  and StatelessWhile and for the v1 frame ops are gone, and every function
  and class of TF's `control_flow_state` (its v1 gradient-loop state,
  history stacks included) raises when used; all restored after."""
  from tensorflow.python.ops import control_flow_state  # pylint: disable=g-import-not-at-top
  registry = tf_ops.gradient_registry._registry  # pylint: disable=protected-access
  types = _TF_WHILE_TYPES + _TF_V1_LOOP_TYPES
  saved_rules = {k: registry[k] for k in types if k in registry}
  refusing = {k: dict(registry[k], type=_refuse)
              for k in _TF_V1_LOOP_TYPES if k in registry}
  saved_state = {
      name: value for name, value in vars(control_flow_state).items()
      if callable(value)
      and getattr(value, "__module__", None) == control_flow_state.__name__}
  with tf_builders_unavailable():
    try:
      for k in _TF_WHILE_TYPES:
        registry.pop(k, None)
      registry.update(refusing)  # registered (not differentiable), refusing
      for name in saved_state:
        setattr(control_flow_state, name, _refuse)
      yield
    finally:
      registry.update(saved_rules)
      for name, value in saved_state.items():
        setattr(control_flow_state, name, value)
