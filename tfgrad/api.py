"""`tfgrad.gradients` and its TF1 twin: argument checking and normalisation,
then the backprop pass. Signatures and error types are those of
`tf.gradients` / `tf.compat.v1.gradients`."""

import contextlib
import os
import threading

import numpy as np
import tensorflow as tf

from tfgrad import aggregate
from tfgrad import backprop
from tfgrad import emit
from tfgrad import graph_walk
from tfgrad import tf_compat
from tfgrad.emit import raw

_STRICT_ENV = "TFGRAD_STRICT"
_strict_local = threading.local()


def _strict_default():
  value = getattr(_strict_local, "value", None)
  if value is not None:
    return value
  return os.environ.get(_STRICT_ENV, "").lower() in ("1", "true", "yes")


@contextlib.contextmanager
def strict_mode(enabled=True):
  """Within this context, ops without a tfgrad rule raise LookupError
  instead of falling back to TF's registered gradient (overrides from
  `gradient_override_map`/`tf.custom_gradient` and function-call gradients
  still apply). The environment variable TFGRAD_STRICT=1 sets the default."""
  previous = getattr(_strict_local, "value", None)
  _strict_local.value = enabled
  try:
    yield
  finally:
    _strict_local.value = previous


@tf.autograph.experimental.do_not_convert
def gradients(ys, xs, grad_ys=None, name="gradients", gate_gradients=False,
              aggregation_method=None, stop_gradients=None,
              unconnected_gradients=tf.UnconnectedGradients.NONE, *,
              strict=None):
  """Symbolic derivatives of sum(ys) with respect to each x in xs.

  A drop-in for `tf.gradients` (TF2 signature): valid in graph context only
  (inside `tf.function` or under a default `tf.Graph`). Returns a list of
  len(xs) Tensors, IndexedSlices or None. `strict=True` refuses TF's
  registry as fallback (see `strict_mode`).
  """
  return gradients_v1(ys, xs, grad_ys, name, True, gate_gradients,
                      aggregation_method, stop_gradients,
                      unconnected_gradients, strict=strict)


@tf.autograph.experimental.do_not_convert
def gradients_v1(ys, xs, grad_ys=None, name="gradients",
                 colocate_gradients_with_ops=False, gate_gradients=False,
                 aggregation_method=None, stop_gradients=None,
                 unconnected_gradients=tf.UnconnectedGradients.NONE, *,
                 strict=None):
  """A drop-in for `tf.compat.v1.gradients` (adds colocate_gradients_with_ops)."""
  graph = tf.compat.v1.get_default_graph()
  with tf_compat.mutation_lock(graph):
    return gradients_helper(ys, xs, grad_ys, name, colocate_gradients_with_ops,
                            gate_gradients, aggregation_method, stop_gradients,
                            unconnected_gradients, strict=strict)


def _as_list(x):
  return list(x) if isinstance(x, (list, tuple)) else [x]


@tf.autograph.experimental.do_not_convert
def gradients_helper(ys, xs, grad_ys=None, name="gradients",
                     colocate_gradients_with_ops=False, gate_gradients=False,
                     aggregation_method=None, stop_gradients=None,
                     unconnected_gradients=tf.UnconnectedGradients.NONE,
                     src_graph=None, optimize_identity_n=False, *,
                     strict=None):
  """The engine's entry point, with TF's internal `_GradientsHelper`
  signature: `src_graph` is the graph whose ops are differentiated (a
  function body, say) while new ops go into the default graph."""
  if tf.executing_eagerly():
    raise RuntimeError("tf.gradients is not supported when eager execution "
                       "is enabled. Use tf.GradientTape instead.")
  ys = tf_compat.variables_to_tensors(_as_list(ys))
  xs = [x.handle if tf_compat.is_resource_variable(x) else x
        for x in _as_list(xs)]
  grad_ys = None if grad_ys is None else _as_list(grad_ys)
  if tf_compat.any_composite(xs) or tf_compat.any_composite(ys):
    flat_grads = gradients_helper(
        tf_compat.flatten_composites(ys), tf_compat.flatten_composites(xs),
        None if grad_ys is None else tf_compat.flatten_composites(grad_ys),
        name, colocate_gradients_with_ops, gate_gradients, aggregation_method,
        stop_gradients, unconnected_gradients, src_graph, strict=strict)
    return tf_compat.unflatten_composites(xs, flat_grads)

  with tf_compat.building_lock(tf_compat.default_graph()):
    return _gradients_in_graph(ys, xs, grad_ys, name,
                               colocate_gradients_with_ops, gate_gradients,
                               aggregation_method, stop_gradients,
                               unconnected_gradients, src_graph,
                               optimize_identity_n, strict)


def _gradients_in_graph(ys, xs, grad_ys, name, colocate_gradients_with_ops,
                        gate_gradients, aggregation_method, stop_gradients,
                        unconnected_gradients, src_graph, optimize_identity_n,
                        strict):
  """`gradients_helper` once composites are flattened, holding the lock of
  the graph it builds in (`tf_compat.building_lock`)."""
  src_graph = src_graph or tf.compat.v1.get_default_graph()
  try:
    unconnected = tf.UnconnectedGradients(unconnected_gradients)
  except ValueError:
    raise ValueError("Unknown value for unconnected_gradients: "
                     f"'{unconnected_gradients}'") from None
  options = backprop.Options(
      colocate=bool(colocate_gradients_with_ops), gate=bool(gate_gradients),
      aggregation=aggregate.check_method(aggregation_method),
      unconnected=unconnected,
      strict=_strict_default() if strict is None else bool(strict),
      optimize_identity_n=optimize_identity_n)
  stop_gradients = [] if stop_gradients is None else _as_list(stop_gradients)
  if grad_ys is None:
    grad_ys = [None] * len(ys)

  with tf.compat.v1.name_scope(name, "gradients",
                               ys + xs + stop_gradients + grad_ys) as scope:
    gradient_uid = tf_compat.new_gradient_uid(tf.compat.v1.get_default_graph())
    ys = tf_compat.to_tensors_or_slices(ys, "y")
    xs = tf_compat.to_tensors_or_slices(xs, "x", as_ref=True)
    to_ops = [y.op for y in ys]
    resolver = graph_walk.InputResolver(
        xs, tf_compat.function_graph_chain(src_graph))
    subgraph = graph_walk.between(
        to_ops, [x.op for x in xs], [t.op for t in stop_gradients], resolver,
        blocks=lambda op: backprop.blocks_gradient(op, src_graph,
                                                   options.strict))
    if tf_compat.has_v1_control_flow(subgraph.ops):
      return _v1_control_flow_fallback(
          ys, xs, grad_ys, scope, options, stop_gradients, src_graph)
    # Rules share one constant per value (`emit.const_cache`).
    with emit.const_cache():
      grad_ys = _default_grad_ys(grad_ys, ys, options.colocate, gradient_uid)
      state = backprop.Pass(options, src_graph, resolver, subgraph, to_ops,
                            gradient_uid, scope)
      # Re-entrant calls (bodies differentiated by TF's control-flow and
      # function-call rules) keep this call's strictness.
      with strict_mode(options.strict), \
          tf_compat.building_in(tf_compat.default_graph()):
        return backprop.run(state, ys, grad_ys, xs)


def _v1_control_flow_fallback(ys, xs, grad_ys, scope, options, stop_gradients,
                              src_graph):
  """v1 while loops (Enter/Exit frames, only built when control flow v2 is
  disabled) need TF's loop-state machinery; such graphs go to TF's engine."""
  if options.strict:
    raise LookupError("strict mode: the graph between ys and xs contains a "
                      "v1 while loop, which tfgrad leaves to TF's engine")
  return tf_compat.ORIGINAL_GRADIENTS_HELPER(
      ys, xs, grad_ys, scope, options.colocate, options.gate,
      options.aggregation, stop_gradients, options.unconnected, src_graph,
      options.optimize_identity_n)


def _check_grad_y_dtype(y, grad_y):
  """TypeError (as TF) when grad_y's dtype cannot be y's gradient."""
  yd, gd = y.dtype, grad_y.dtype
  if yd.is_floating or yd.is_integer:
    ok, want = gd.is_floating or gd.is_integer, "real or integer"
  elif yd.is_complex:
    ok, want = gd.is_complex, "complex"
  elif yd == tf.variant:
    ok, want = gd == tf.variant, "variant"
  elif yd == tf.resource:
    ok, want = gd != tf.resource, "anything but a resource"
  else:
    raise TypeError(f"Tensor {y} with type {yd.name} must be numeric to "
                    "obtain a default gradient")
  if not ok:
    raise TypeError(f"Gradient type {gd.name} given in grad_ys for tensor {y} "
                    f"of type {yd.name} must be {want}")


def _default_grad_ys(grad_ys, ys, colocate, gradient_uid):
  """grad_ys with None replaced by ones; each given one checked and passed
  through an identity named grad_ys_<i> in the gradient scope."""
  if len(grad_ys) != len(ys):
    raise ValueError(f"Length mismatch. Passed {len(grad_ys)} grad_ys for "
                     f"{len(ys)} ys")
  grad_ys = tf_compat.to_tensors_or_slices(grad_ys, "grad_y")
  result = []
  for i, (y, grad_y) in enumerate(zip(ys, grad_ys)):
    ctx = (tf_compat.colocate_for_gradient(y.op, gradient_uid) if colocate
           else contextlib.nullcontext())
    with ctx:
      if grad_y is None:
        if y.dtype.is_complex:
          raise TypeError(f"Gradients of complex tensors ({y}) must set "
                          f"grad_ys (y.dtype = {y.dtype.name})")
        result.append(_ones_like(y, f"grad_ys_{i}"))
        continue
      _check_grad_y_dtype(y, grad_y)
      if isinstance(grad_y, tf.IndexedSlices):
        result.append(tf.IndexedSlices(
            _identity_if_tensor(grad_y.values, f"grad_ys_{i}_values"),
            _identity_if_tensor(grad_y.indices, f"grad_ys_{i}_indices"),
            _identity_if_tensor(grad_y.dense_shape, f"grad_ys_{i}_shape")))
      else:
        result.append(tf.identity(grad_y, name=f"grad_ys_{i}"))
  return result


def _ones_like(y, name):
  """Ones of y's shape: a value known at construction time when the shape
  is static and small (`emit.Known`: an op only if a rule needs one), else
  Fill(Shape(y), 1) as TF builds it."""
  shape = y.shape
  if shape.is_fully_defined() and shape.num_elements() <= emit.SMALL_CONSTANT_ELEMENTS:
    return emit.Known(np.ones(shape.as_list()), y.dtype)
  with tf.compat.v1.name_scope(name) as scope:
    return raw.Fill(dims=raw.Shape(input=y), value=emit.const(1, y.dtype),
                    name=scope)


def _identity_if_tensor(t, name):
  return tf.identity(t, name=name) if isinstance(t, tf.Tensor) else t
