"""`tfgrad.gradients` and its TF1 twin: argument checking and normalisation,
then the backprop pass. Signatures and error types are those of
`tf.gradients` / `tf.compat.v1.gradients`."""

import contextlib
import functools
import os
import threading

import numpy as np
import tensorflow as tf

from tfgrad import aggregate
from tfgrad import backprop
from tfgrad import emit
from tfgrad import graph_walk
from tfgrad import remat
from tfgrad import tf_compat
from tfgrad import v1_loops
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
              strict=None, checkpoints=None):
  """Symbolic derivatives of sum(ys) with respect to each x in xs.

  A drop-in for `tf.gradients` (TF2 signature): valid in graph context only
  (inside `tf.function` or under a default `tf.Graph`). Returns a list of
  len(xs) Tensors, IndexedSlices or None. `strict=True` refuses TF's
  registry as fallback (see `strict_mode`); `checkpoints` rematerializes
  (see `tfgrad.remat`).
  """
  return gradients_v1(ys, xs, grad_ys, name, True, gate_gradients,
                      aggregation_method, stop_gradients,
                      unconnected_gradients, strict=strict,
                      checkpoints=checkpoints)


@tf.autograph.experimental.do_not_convert
def gradients_v1(ys, xs, grad_ys=None, name="gradients",
                 colocate_gradients_with_ops=False, gate_gradients=False,
                 aggregation_method=None, stop_gradients=None,
                 unconnected_gradients=tf.UnconnectedGradients.NONE, *,
                 strict=None, checkpoints=None):
  """A drop-in for `tf.compat.v1.gradients` (adds colocate_gradients_with_ops)."""
  graph = tf.compat.v1.get_default_graph()
  if checkpoints is None:  # `tfgrad.install(checkpoints=...)`'s default
    checkpoints = remat.installed_default()
  if checkpoints is not None:  # rematerializing: tfgrad.remat
    with tf_compat.mutation_lock(graph), tf_compat.building_lock(graph), \
        tf_compat.caller_stack_trace():
      return remat.gradients(ys, xs, grad_ys, name, colocate_gradients_with_ops,
                             gate_gradients, aggregation_method,
                             stop_gradients, unconnected_gradients, strict,
                             checkpoints)
  with tf_compat.mutation_lock(graph):
    return gradients_helper(ys, xs, grad_ys, name, colocate_gradients_with_ops,
                            gate_gradients, aggregation_method, stop_gradients,
                            unconnected_gradients, strict=strict)


def _as_list(x):
  return list(x) if isinstance(x, (list, tuple)) else [x]


def tensor_lists(ys, xs):
  """`ys` and `xs` (a value or a list) as lists of graph values: variables
  among the ys read, resource variables among the xs as their handles."""
  ys = tf_compat.variables_to_tensors(_as_list(ys))
  xs = [x.handle if tf_compat.is_resource_variable(x) else x
        for x in _as_list(xs)]
  return ys, xs


@tf.autograph.experimental.do_not_convert
def gradients_helper(ys, xs, grad_ys=None, name="gradients",
                     colocate_gradients_with_ops=False, gate_gradients=False,
                     aggregation_method=None, stop_gradients=None,
                     unconnected_gradients=tf.UnconnectedGradients.NONE,
                     src_graph=None, optimize_identity_n=False, *,
                     strict=None, seed_identity=True, redirect=None,
                     on_ready=None):
  """The engine's entry point, with TF's internal `_GradientsHelper`
  signature: `src_graph` is the graph whose ops are differentiated (a
  function body, say) while new ops go into the default graph.
  `seed_identity=False` uses given grad_ys as they are (function-graph
  builders, whose seeds are arguments: an Identity would only add an op).
  `redirect` and `on_ready`: see `graph_walk.InputResolver` and
  `backprop.Pass` (used by `tfgrad.remat`)."""
  if tf.executing_eagerly():
    raise RuntimeError("tf.gradients is not supported when eager execution "
                       "is enabled. Use tf.GradientTape instead.")
  ys, xs = tensor_lists(ys, xs)
  grad_ys = None if grad_ys is None else _as_list(grad_ys)
  if tf_compat.any_composite(xs) or tf_compat.any_composite(ys):
    flat_grads = gradients_helper(
        tf_compat.flatten_composites(ys), tf_compat.flatten_composites(xs),
        None if grad_ys is None else tf_compat.flatten_composites(grad_ys),
        name, colocate_gradients_with_ops, gate_gradients, aggregation_method,
        stop_gradients, unconnected_gradients, src_graph, strict=strict,
        seed_identity=seed_identity)
    return tf_compat.unflatten_composites(xs, flat_grads)

  with tf_compat.building_lock(tf_compat.default_graph()), \
      tf_compat.caller_stack_trace():
    return _gradients_in_graph(ys, xs, grad_ys, name,
                               colocate_gradients_with_ops, gate_gradients,
                               aggregation_method, stop_gradients,
                               unconnected_gradients, src_graph,
                               optimize_identity_n, strict, seed_identity,
                               redirect, on_ready)


def _gradients_in_graph(ys, xs, grad_ys, name, colocate_gradients_with_ops,
                        gate_gradients, aggregation_method, stop_gradients,
                        unconnected_gradients, src_graph, optimize_identity_n,
                        strict, seed_identity=True, redirect=None,
                        on_ready=None):
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

  with _gradient_scope(name, ys, xs, stop_gradients, grad_ys) as scope:
    gradient_uid = tf_compat.new_gradient_uid(tf.compat.v1.get_default_graph())
    ys, xs, grad_ys = _validated(ys, xs, grad_ys, stop_gradients)
    to_ops = [y.op for y in ys]
    resolver = graph_walk.InputResolver(
        xs, tf_compat.function_graph_chain(src_graph), redirect)
    # With v1 loops about, the check below must see every op cut,
    # also those no y depends on, which the pruned walk never visits.
    prune = not graph_walk.may_hold_v1_loops(src_graph)
    subgraph = graph_walk.between(
        to_ops, [x.op for x in xs], [t.op for t in stop_gradients], resolver,
        blocks=backprop.gradient_blocker(src_graph, options.strict),
        prune=prune)
    if v1_loops.blocked_inside_loop(subgraph.blocked):
      # as stock, whose walk crosses ops declared not differentiable
      subgraph = graph_walk.between(
          to_ops, [x.op for x in xs], [t.op for t in stop_gradients],
          resolver, prune=False)
    # Rules share one constant per value (`emit.const_cache`).
    with emit.const_cache():
      if seed_identity or any(g is None for g in grad_ys):
        grad_ys = _default_grad_ys(grad_ys, ys, options.colocate,
                                   gradient_uid)
      state = backprop.Pass(options, src_graph, resolver, subgraph, to_ops,
                            gradient_uid, scope)
      state.on_ready = on_ready
      state.loops = v1_loops.LoopStates.plan(subgraph, resolver,
                                             state.colocated)
      if state.loops is not None:  # the loops' Exits changed pending counts
        subgraph.ancestors = None  # and joined with no y depending on them
        subgraph.stop_ops = graph_walk.stop_ops(
            subgraph.from_ops, subgraph.stop_gradient_ops, subgraph.pending,
            resolver)
      # Re-entrant calls (bodies differentiated by TF's control-flow and
      # function-call rules) keep this call's strictness.
      with strict_mode(options.strict), \
          tf_compat.building_in(tf_compat.default_graph()):
        return backprop.run(state, ys, grad_ys, xs)


# ----- validation phase: before any walk of the graph -----

@contextlib.contextmanager
def _gradient_scope(name, ys, xs, stop_gradients, grad_ys):
  """TF's name scope for the call. Entering it checks that all arguments
  live in one graph (ValueError, as TF); the message then names the
  argument that does not."""
  values = ys + xs + stop_gradients + grad_ys
  scope_cm = tf.compat.v1.name_scope(name, "gradients", values)
  try:
    scope = scope_cm.__enter__()
  except ValueError as e:
    where = _foreign_graph_argument(
        [("ys", ys), ("xs", xs), ("stop_gradients", stop_gradients),
         ("grad_ys", grad_ys)])
    if where is None:
      raise
    raise ValueError(f"{where}. {e}") from None
  with contextlib.ExitStack() as stack:
    stack.push(scope_cm)
    yield scope


def _foreign_graph_argument(named):
  """'xs[1] (other_x:0) is in another graph than ys[0] (y:0)', or None."""
  first = None
  for label, values in named:
    for i, v in enumerate(values):
      graph = getattr(v, "graph", None)
      if graph is None:
        continue
      if first is None:
        first = (graph, f"{label}[{i}] ({_describe(v)})")
      elif graph is not first[0]:
        return (f"{label}[{i}] ({_describe(v)}) is in another graph than "
                f"{first[1]}" + _inside_function(first[0], first[1])
                + _inside_function(graph, f"{label}[{i}]"))
  return None


def _inside_function(graph, what):
  """' (ys[0] is inside 'cond_true_4', a function graph run by op 'cond'
  (op type: StatelessIf); ...)' for a function graph, else ''."""
  if not tf_compat.is_function_graph(graph):
    return ""
  op = tf_compat.op_running_graph(graph)
  runner = (f", run by op '{op.name}' (op type: {op.type})" if op is not None
            else "")
  return (f" ({what.split(' ')[0]} is inside function graph "
          f"'{graph.name}'{runner}: its tensors are differentiable only "
          "from inside it; differentiate the op's outputs instead)")


def _describe(v):
  name = getattr(v, "name", None)
  if isinstance(name, str):
    return name
  text = repr(v)
  return f"{type(v).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def _validated(ys, xs, grad_ys, stop_gradients):
  """The validation phase: converts ys, xs and grad_ys and checks every
  argument, in TF's order, before the graph is walked, so a bad argument
  raises whether or not any gradient would flow through it (pruning saves
  work, it never skips a check). Exception types are TF's; messages name
  the argument and its index."""
  ys = _converted(ys, "ys", "y")
  xs = _converted(xs, "xs", "x", as_ref=True)
  if len(grad_ys) != len(ys):
    raise ValueError(f"Length mismatch. Passed {len(grad_ys)} grad_ys for "
                     f"{len(ys)} ys")
  grad_ys = _converted(grad_ys, "grad_ys", "grad_y")
  for i, (y, grad_y) in enumerate(zip(ys, grad_ys)):
    if y is None:
      raise AttributeError(f"ys[{i}] is None; each y must be a Tensor")
    _check_grad_y(i, y, grad_y)
  _check_summable(ys, grad_ys)
  _check_have_ops(xs, "xs")
  _check_have_ops(stop_gradients, "stop_gradients")
  return ys, xs, grad_ys


def _converted(values, label, name, as_ref=False):
  """`values` as Tensors/IndexedSlices; the error names the bad entry."""
  try:
    return tf_compat.to_tensors_or_slices(values, name, as_ref=as_ref)
  except (TypeError, ValueError) as e:
    if type(e) not in (TypeError, ValueError):
      raise
    with tf.Graph().as_default():  # locates the entry, adds nothing here
      for i, v in enumerate(values):
        try:
          tf_compat.to_tensors_or_slices([v], name)
        except (TypeError, ValueError):
          raise type(e)(f"{label}[{i}] ({_describe(v)}) cannot be converted "
                        f"to a Tensor: {e}") from None
    raise


def _check_have_ops(values, label):
  """AttributeError (TF reads `.op` of each) for entries that are no
  tensors: None, Python numbers, strings, arrays."""
  for i, t in enumerate(values):
    if not hasattr(t, "op"):
      what = "None" if t is None else f"a {type(t).__name__} ({_describe(t)})"
      raise AttributeError(f"{label}[{i}] is {what}, not a Tensor "
                           f"(it has no attribute 'op')")


def _check_grad_y(i, y, grad_y):
  """grad_ys[i] against ys[i]: TypeError for a dtype that cannot be y's
  gradient (TF's rule by dtype kind), and for a y that has no default
  gradient when grad_ys[i] is missing."""
  yd = y.dtype
  if grad_y is None:
    if yd.is_complex:
      raise TypeError(f"Gradients of complex tensors ({y}) must set grad_ys "
                      f"(y.dtype = {yd.name}): ys[{i}] has no grad_ys entry")
    if yd in (tf.string, tf.resource, tf.variant):
      raise TypeError(f"ys[{i}] ({y.name}) with type {yd.name} must be "
                      "numeric to obtain a default gradient (ones of its "
                      "type do not exist); pass its gradient in grad_ys")
    return
  gd = grad_y.dtype
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
                    f"obtain a default gradient: ys[{i}]")
  if not ok:
    raise TypeError(f"Gradient type {gd.name} given in grad_ys[{i}] for "
                    f"tensor ys[{i}] {y} of type {yd.name} must be {want}")


def _check_summable(ys, grad_ys):
  """The grad_ys of a tensor listed more than once in ys are summed, by TF
  too, whether or not any x is reached through it: TypeError for entries
  of different dtypes, ValueError for incompatible static shapes, as the
  sum raises them, checked here so that pruning cannot skip them. Other
  mismatches of a grad_ys entry with its y (a float64 entry for a float32
  y, a scalar for a vector) fail, or work, wherever a rule combines them,
  exactly as under TF."""
  first = {}
  for i, (y, grad_y) in enumerate(zip(ys, grad_ys)):
    j = first.setdefault(id(y), i)
    if j == i or isinstance(grad_y, tf.IndexedSlices) \
        or isinstance(grad_ys[j], tf.IndexedSlices):
      continue
    grad_y = y if grad_y is None else grad_y  # default: ones like y
    other = y if grad_ys[j] is None else grad_ys[j]
    if grad_y.dtype != other.dtype:
      raise TypeError(
          f"grad_ys[{j}] ({other.dtype.name}) and grad_ys[{i}] "
          f"({grad_y.dtype.name}) are both gradients of ys[{j}] = ys[{i}] "
          f"({y.name}) and must be summed: their dtypes differ")
    if not grad_y.shape.is_compatible_with(other.shape):
      raise ValueError(
          f"grad_ys[{j}] (shape {other.shape}) and grad_ys[{i}] (shape "
          f"{grad_y.shape}) are both gradients of ys[{j}] = ys[{i}] "
          f"({y.name}) and must be summed: their shapes are incompatible")


def _default_grad_ys(grad_ys, ys, colocate, gradient_uid):
  """grad_ys (checked by `_validated`) with None replaced by ones; each
  given one passed through an identity named grad_ys_<i> in the gradient
  scope."""
  result = []
  graph = tf_compat.default_graph()
  for i, (y, grad_y) in enumerate(zip(ys, grad_ys)):
    # (backprop's colocation scope: TF's reads y's placement per op built)
    ctx = (tf_compat.colocated_with_op(
        graph, y.op, gradient_uid, functools.partial(tf_compat.private_attrs,
                                                     y.op))
           if colocate else contextlib.nullcontext())
    with ctx:
      if grad_y is None:
        result.append(_ones_like(y, f"grad_ys_{i}"))
      elif isinstance(grad_y, tf.IndexedSlices):
        result.append(tf.IndexedSlices(
            _identity_if_tensor(grad_y.values, f"grad_ys_{i}_values"),
            _identity_if_tensor(grad_y.indices, f"grad_ys_{i}_indices"),
            _identity_if_tensor(grad_y.dense_shape, f"grad_ys_{i}_shape")))
      else:  # (emit's Identity: tf.identity costs several ops' worth)
        result.append(_identity(grad_y, f"grad_ys_{i}"))
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


def _identity(t, name):
  """Identity of `t` named `name`, keeping its handle data as tf.identity does."""
  out = raw.Identity(input=t, name=name)
  tf_compat.copy_handle_data(t, out)
  return out


def _identity_if_tensor(t, name):
  return tf.identity(t, name=name) if isinstance(t, tf.Tensor) else t
