"""Derivatives beyond one reverse pass, built on `tfgrad.gradients`.

  hessian_vector_product  reverse over reverse: one extra pass, H @ v
  hessians                H of sum(ys) per x: forward over reverse, x's
                          identity basis pushed through the gradient in one
                          batched pass; else Hessian-vector products over
                          the basis of x, vectorized (`tf.vectorized_map`)
  jvp                     forward-mode directional derivatives J @ t, by the
                          double-reverse construction (the vjp of the vjp
                          with respect to its cotangent)
  jacobian                d y / d x for every entry, rows by reverse mode or
  batch_jacobian          columns by forward mode, whichever needs fewer
                          passes; forward rules: one batched pass from an
                          identity basis; else vectorized, a while_loop
                          where pfor cannot convert the gradient graph

All are valid in graph context only (a `tf.function`, or a default
`tf.Graph`); in eager mode they raise `RuntimeError`, as `gradients` does.
Unconnected xs give None, or zeros with `unconnected_gradients="zero"`;
integer xs are constants. IndexedSlices gradients stay sparse inside a
pass and are densified only in a Jacobian or Hessian.

Complex dtypes follow TF's convention, in which the gradient of a real L
with respect to z is conj(dL/dz) for holomorphic parts: the double-reverse
jvp then gives f'(z) t, ForwardAccumulator's value, for holomorphic f.
"""

import numpy as np
import tensorflow as tf
from absl import logging

from tfgrad import api
from tfgrad import forward

_NONE = tf.UnconnectedGradients.NONE
_ZERO = tf.UnconnectedGradients.ZERO

_no_autograph = tf.autograph.experimental.do_not_convert


# ----- argument checks -----

def _as_list(x):
  return list(x) if isinstance(x, (list, tuple)) else [x]


def _graph_only(what):
  if tf.executing_eagerly():
    raise RuntimeError(f"tfgrad.{what} is not supported when eager execution "
                       "is enabled; call it inside a tf.function or under a "
                       "default tf.Graph.")


def _unconnected(value):
  try:
    return tf.UnconnectedGradients(value)
  except ValueError:
    raise ValueError(
        f"Unknown value for unconnected_gradients: '{value}'") from None


def _as_tensors(values, what):
  """Tensors for ys/xs; variables stay variables (`gradients` takes them,
  and their shape and dtype are the value's)."""
  out = []
  for i, v in enumerate(values):
    if isinstance(v, tf.Variable):
      out.append(v)
      continue
    try:
      out.append(tf.convert_to_tensor(v))
    except (TypeError, ValueError) as e:
      raise TypeError(f"{what}[{i}] is not convertible to a Tensor: {e}") \
          from None
  return out


def _differentiable(t):
  dtype = _value_dtype(t)
  return dtype.is_floating or dtype.is_complex


def _handle_shape_and_type(x):
  """A raw resource handle's (shape, dtype), from its handle data."""
  data = getattr(x, "_handle_data", None)
  if data is not None and data.shape_and_type:
    return (tf.TensorShape(data.shape_and_type[0].shape),
            tf.as_dtype(data.shape_and_type[0].dtype))
  return tf.TensorShape(None), tf.float32


def _value_dtype(x):
  """The dtype a gradient for x has (a variable's, not its handle's)."""
  if not isinstance(x, tf.Variable) and x.dtype == tf.resource:
    return _handle_shape_and_type(x)[1]
  return x.dtype.base_dtype


def _value_shape(x):
  if not isinstance(x, tf.Variable) and x.dtype == tf.resource:
    return _handle_shape_and_type(x)[0]
  return x.shape


def _shape_of(x):
  """x's shape: a list where static, else a tensor computed at run time."""
  shape = _value_shape(x)
  return shape.as_list() if shape.is_fully_defined() else tf.shape(x)


def _concat_shapes(a, b):
  """a + b for shapes given as lists (static) or int32 tensors."""
  if isinstance(a, list) and isinstance(b, list):
    return a + b
  return tf.concat([tf.constant(a, tf.int32) if isinstance(a, list) else a,
                    tf.constant(b, tf.int32) if isinstance(b, list) else b], 0)


def _check_like_xs(values, xs, what, xs_name="xs"):
  """`values` (tangents, vs) pair up with xs: number, static shape, dtype."""
  if len(values) != len(xs):
    raise ValueError(f"{what} has {len(values)} entries, {xs_name} has "
                     f"{len(xs)}: they must match one for one")
  out = []
  for i, (v, x) in enumerate(zip(values, xs)):
    if v is None:
      out.append(None)
      continue
    v = tf.convert_to_tensor(v)
    want_shape, want_dtype = _value_shape(x), _value_dtype(x)
    if not v.shape.is_compatible_with(want_shape):
      raise ValueError(f"{what}[{i}] has shape {v.shape}, {xs_name}[{i}] has "
                       f"shape {want_shape}: they must match")
    if v.dtype.base_dtype != want_dtype:
      raise ValueError(f"{what}[{i}] has dtype {v.dtype.name}, {xs_name}[{i}] "
                       f"has dtype {want_dtype.name}: they must match")
    out.append(v)
  return out


# ----- the shared pieces -----

def _pull_back(grad, cotangent):
  """(ys, grad_ys) for differentiating <grad, cotangent>: a Tensor as it is,
  an IndexedSlices through its values against the gathered cotangent (so
  it is never densified)."""
  if isinstance(grad, tf.IndexedSlices):
    return grad.values, tf.gather(cotangent, grad.indices)
  return grad, cotangent


def _dense(g):
  return tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g


def _zeros_for(x):
  return tf.zeros(_shape_of(x), _value_dtype(x))


def _basis(i, n, shape, dtype):
  """The i-th unit vector of n entries, in `shape`."""
  return tf.reshape(tf.one_hot(i, n, dtype=dtype), shape)


def _size(t):
  """Static element count of t, or a scalar int32 tensor."""
  n = t.shape.num_elements()
  return n if n is not None else tf.size(t)


def _x_size(x):
  """Element count of an x (a resource handle: its variable's)."""
  n = _value_shape(x).num_elements()
  return n if n is not None else tf.size(x)


def _static_size(t):
  return t.shape.num_elements()


def map_rows(fn, n, dtypes, vectorize=True, what="jacobian"):
  """[fn(0), ..., fn(n-1)] stacked along a new axis 0, for fn returning one
  Tensor or None per entry of `dtypes`.

  vectorize=True converts fn's graph with pfor (`tf.vectorized_map`, as
  `GradientTape.jacobian` does). An op pfor cannot convert (no converter,
  or one that cannot take the inputs that differ per row, such as Conv2D
  with a per-row filter in the second-order gradients of a convolution)
  runs in a while_loop of its own inside the vectorized graph, and the log
  names these op types; where pfor raises, all rows run in a
  `tf.while_loop`, as they do for vectorize=False.
  """
  pattern = {}

  def body(i):
    outs = list(fn(i))
    pattern["none"] = [o is None for o in outs]
    return [tf.zeros([], d) if o is None else o for o, d in zip(outs, dtypes)]

  stacked = None
  if vectorize:
    graph = tf.compat.v1.get_default_graph()
    first_new = len(graph.get_operations())
    try:
      stacked = tf.vectorized_map(body, tf.range(n), warn=True)
      looped = looped_in_pfor(graph.get_operations()[first_new:], graph)
      if looped:
        logging.warning("tfgrad.%s: pfor runs these ops in a while_loop of "
                        "their own: %s", what, ", ".join(looped))
    except (ValueError, NotImplementedError, TypeError) as e:
      logging.warning("tfgrad.%s: pfor cannot vectorize the gradient graph, "
                      "rows run in a tf.while_loop: %s", what,
                      str(e).splitlines()[0] if str(e) else type(e).__name__)
  if stacked is None:
    stacked = _while_rows(body, n, dtypes)
  return [None if none else s for none, s in zip(pattern["none"], stacked)]


def looped_in_pfor(new_ops, graph):
  """Types of the ops pfor converted by its while_loop fallback: its loop
  is named `<op name>/pfor/while` (a While op converted by pfor is named
  so too, and is vectorized: not counted)."""
  suffix = "/pfor/while"
  found = set()
  for op in new_ops:
    if op.type in ("While", "StatelessWhile") and op.name.endswith(suffix):
      try:
        original = graph.get_operation_by_name(op.name[:-len(suffix)])
      except KeyError:
        continue
      if original.type not in ("While", "StatelessWhile"):
        found.add(original.type)
  return sorted(found)


def _while_rows(body, n, dtypes):
  arrays = [tf.TensorArray(d, size=n, infer_shape=True) for d in dtypes]

  def step(i, *arrays):
    outs = body(i)
    return (i + 1,) + tuple(a.write(i, o) for a, o in zip(arrays, outs))

  _, *arrays = tf.while_loop(lambda i, *_: i < n, step,
                             (tf.constant(0),) + tuple(arrays))
  return [a.stack() for a in arrays]


def _finish(stacked, lead_shape, x, lead_static):
  """Reshapes [n, ...x] rows to lead_shape + x.shape, static shape set."""
  x_shape = _shape_of(x)
  out = tf.reshape(stacked, _concat_shapes(lead_shape, x_shape))
  out.set_shape(lead_static.concatenate(_value_shape(x)))
  return out


# ----- Hessian-vector products and Hessians -----

@_no_autograph
def hessian_vector_product(ys, xs, vs, *, name="hessian_vector_product",
                           unconnected_gradients=_NONE,
                           aggregation_method=None):
  """H @ v for H the Hessian of sum(ys) with respect to all of xs (the
  block matrix over xs): returns one Tensor per x, sum_j d2L/dx dx_j v_j.

  Reverse over reverse: the first pass gives g = dL/dx, the second the
  gradient of <g, v>, without forming H. vs must match xs in number, shape
  and dtype (ValueError naming the index and both shapes). An x that L
  does not depend on at second order gives None (zeros with
  unconnected_gradients="zero").
  """
  _graph_only("hessian_vector_product")
  unconnected = _unconnected(unconnected_gradients)
  ys, xs = _as_list(ys), _as_list(xs)
  with tf.name_scope(name):
    vs = _check_like_xs(_as_list(vs), _as_tensors(xs, "xs"), "vs")
    grads = api.gradients(ys, xs, aggregation_method=aggregation_method)
    pairs = [_pull_back(g, v) for g, v in zip(grads, vs)
             if g is not None and v is not None]
    if not pairs:
      return [_zeros_for(x) if unconnected == _ZERO else None
              for x in _as_tensors(xs, "xs")]
    return api.gradients([p[0] for p in pairs], xs, [p[1] for p in pairs],
                         aggregation_method=aggregation_method,
                         unconnected_gradients=unconnected)


@_no_autograph
def hessians(ys, xs, gate_gradients=False, aggregation_method=None,
             name="hessians", *, vectorize=True):
  """`tf.hessians`: for each x, the Hessian of sum(ys) with respect to x,
  of shape x.shape + x.shape.

  Where every op between x and its gradient g has a forward rule (and x
  is real with a static shape), each Hessian is g's tangents along all of
  x's basis vectors, in one batched forward pass over the gradient graph.
  Otherwise it is the Hessian-vector products of x's basis vectors,
  vectorized with pfor (a `tf.while_loop` where pfor cannot convert the
  gradient graph, or with vectorize=False). Differences from stock: an x
  that ys do not depend on gives None (stock raises), and an x on which
  the gradient does not depend gives zeros (stock raises).
  """
  _graph_only("hessians")
  ys, xs = _as_list(ys), _as_list(xs)
  with tf.name_scope(name):
    grads = api.gradients(ys, xs, gate_gradients=gate_gradients,
                          aggregation_method=aggregation_method)
    out = []
    for k, (g, x) in enumerate(zip(grads, xs)):
      if g is None:
        out.append(None)
        continue
      x = _as_tensors([x], "xs")[0]
      out.append(_hessian_block(g, x, k, vectorize, gate_gradients,
                                aggregation_method))
    return out


@_no_autograph
def hessians_v1(ys, xs, name="hessians", colocate_gradients_with_ops=False,
                gate_gradients=False, aggregation_method=None):
  """`tf.compat.v1.hessians`' signature. Gradients are always colocated
  with their forward ops, as in TF2 (placement only; values are equal)."""
  del colocate_gradients_with_ops
  return hessians(ys, xs, gate_gradients, aggregation_method, name)


def _hessian_block(g, x, k, vectorize, gate_gradients, aggregation_method):
  if vectorize:
    native = _native_hessian(g, x)
    if native is not None:
      return native
  n, dtype = _x_size(x), _value_dtype(x)
  x_shape = _shape_of(x)

  def row(i):
    e = _basis(i, n, x_shape, dtype)
    ys, grad_ys = _pull_back(g, e)
    (h,) = api.gradients(ys, [x], [grad_ys], gate_gradients=gate_gradients,
                         aggregation_method=aggregation_method)
    return [None if h is None else _dense(h)]

  (stacked,) = map_rows(row, n, [dtype], vectorize, what="hessians")
  if stacked is None:
    shape = _value_shape(x)
    return tf.zeros(shape.concatenate(shape) if shape.is_fully_defined() else
                    _concat_shapes(_shape_of(x), _shape_of(x)), dtype)
  return _finish(stacked, x_shape, x, _value_shape(x))


def _native_hessian(g, x):
  """d g / d x by forward over reverse in one batched pass: the tangent
  of g along every basis vector of x at once (x's identity, [n] +
  x.shape), through the batched forward rules. None when x's shape is not
  static, x is complex (tf.hessians' rows are TF's conjugated gradients
  there: the pfor path gives them), or an op between x and g has no
  forward rule."""
  shape = _value_shape(x)
  if not shape.is_fully_defined() or not _value_dtype(x).is_floating:
    return None
  n, dtype = shape.num_elements(), _value_dtype(x)
  basis = forward.Basis(shape, dtype)
  found = forward.batched_tangents_or_none([_dense(g)], [_handle(x)], [basis])
  if found is None:
    return None
  (columns,) = found              # columns[j] = d g / d x_j
  if columns is None:
    return tf.zeros(shape.concatenate(shape), dtype)
  # tf.hessians' [i, j] is d g_i / d x_j: the transpose of the columns.
  out = tf.reshape(tf.transpose(tf.reshape(columns, [n, n])),
                   shape.concatenate(shape))
  return out


# ----- forward mode -----

@_no_autograph
def jvp(ys, xs, tangents, *, name="jvp",
        unconnected_gradients=_NONE, aggregation_method=None, native=True):
  """Forward-mode directional derivatives: for each y, sum_i dy/dx_i t_i,
  the values `tf.autodiff.ForwardAccumulator` gives on the same function.

  With native=True, tangents are pushed forward through tfgrad's forward
  rules (`tfgrad.ops.forward_rules`: elementwise, matmul, conv, bias,
  pooling, reductions, shape ops, softmax) when every op between the xs
  and the ys has one. Otherwise it is built as the vjp of the vjp with
  respect to its cotangent u: g(u) = J^T u is linear in u, and the
  gradient of <g(u), t> with respect to u is J t. u is a zeros tensor
  nothing else reads, so at run time only the second pass's ops and the
  forward values they read run (the first pass's ops are left
  unfetched). Returns ys' structure (one Tensor, or a list);
  a y no x reaches gives None, or zeros with unconnected_gradients="zero".
  tangents must match xs in number, shape and dtype (None: a zero
  tangent).
  """
  _graph_only("jvp")
  unconnected = _unconnected(unconnected_gradients)
  single = not isinstance(ys, (list, tuple))
  ys = _as_tensors(_as_list(ys), "ys")
  xs = _as_list(xs)
  with tf.name_scope(name):
    tangents = _check_like_xs(_as_list(tangents), _as_tensors(xs, "xs"),
                              "tangents")
    out = _jvp_list(ys, xs, tangents, unconnected, aggregation_method,
                    native)
  return out[0] if single else out


def _jvp_list(ys, xs, tangents, unconnected, aggregation_method, native):
  live = [i for i, y in enumerate(ys) if _differentiable(y)]
  found = None
  if native:
    handles = [_handle(x) for x in _as_tensors(xs, "xs")]
    found = forward.tangents_or_none([ys[i] for i in live], handles,
                                     tangents)
  if found is not None:
    results = [None] * len(ys)
    for i, f in zip(live, found):
      results[i] = f
    if unconnected == _ZERO:
      results = [tf.zeros_like(y) if r is None else r
                 for r, y in zip(results, ys)]
    return results
  return _double_reverse_jvp(ys, xs, tangents, unconnected,
                             aggregation_method, live)


def _double_reverse_jvp(ys, xs, tangents, unconnected, aggregation_method,
                        live):
  us = [tf.zeros_like(ys[i]) for i in live]
  grads = api.gradients([ys[i] for i in live], xs, us,
                        aggregation_method=aggregation_method)
  pairs = [_pull_back(g, t) for g, t in zip(grads, tangents)
           if g is not None and t is not None]
  results = [None] * len(ys)
  if pairs and us:
    found = api.gradients([p[0] for p in pairs], us, [p[1] for p in pairs],
                          aggregation_method=aggregation_method)
    for i, f in zip(live, found):
      results[i] = None if f is None else _dense(f)
  if unconnected == _ZERO:
    results = [tf.zeros_like(y) if r is None else r
               for r, y in zip(results, ys)]
  return results


# ----- Jacobians -----

def _mode(mode, n_in, n_out, native=lambda: False):
  """The mode with fewer passes; on a tie, forward where `native()` (one
  batched forward pass, no pfor), else reverse."""
  if mode not in (None, "forward", "reverse"):
    raise ValueError(f"mode must be None, 'forward' or 'reverse', not {mode!r}")
  if mode is not None:
    return mode
  if n_in is not None and n_out is not None:
    if n_in < n_out or (n_in == n_out and native()):
      return "forward"
  return "reverse"


@_no_autograph
def jacobian(ys, xs, *, vectorize=True,
             unconnected_gradients=_NONE, mode=None, name="jacobian"):
  """`GradientTape.jacobian(ys, xs)` in a graph: for one Tensor ys and a
  nested structure xs, d ys / d x of shape ys.shape + x.shape per x, in
  xs' structure.

  mode=None picks the fewer passes by the static sizes: forward mode (one
  jvp per entry of the xs) when the xs have fewer entries than ys, else
  reverse mode (one vjp per entry of ys); "forward"/"reverse" force one.
  The passes are vectorized with pfor, or run in a `tf.while_loop` where
  pfor cannot convert the gradient graph or with vectorize=False.
  An unconnected x gives None, or zeros with unconnected_gradients="zero".
  """
  _graph_only("jacobian")
  unconnected = _unconnected(unconnected_gradients)
  y = _as_tensors([ys], "ys")[0]
  flat_xs = tf.nest.flatten(xs, expand_composites=False)
  with tf.name_scope(name):
    tensors = _as_tensors(flat_xs, "xs")
    n_in = (None if any(_value_shape(x).num_elements() is None
                        for x in tensors)
            else sum(_value_shape(x).num_elements() for x in tensors))
    if _mode(mode, n_in, _static_size(y), lambda: _differentiable(y) and
             forward.supported([y], [_handle(x) for x in tensors])) \
        == "forward":
      out = _forward_jacobian(y, flat_xs, tensors, vectorize)
    else:
      out = _reverse_jacobian(y, flat_xs, tensors, vectorize)
    if unconnected == _ZERO:
      out = [_jacobian_zeros(y, x) if j is None else j
             for j, x in zip(out, tensors)]
  return tf.nest.pack_sequence_as(xs, out)


def _jacobian_zeros(y, x):
  shape = y.shape.concatenate(_value_shape(x))
  if shape.is_fully_defined():
    return tf.zeros(shape, _value_dtype(x))
  return tf.zeros(_concat_shapes(_shape_of(y), _shape_of(x)),
                  _value_dtype(x))


def _reverse_jacobian(y, xs, tensors, vectorize):
  n, y_shape = _size(y), _shape_of(y)
  dtypes = [_value_dtype(x) for x in tensors]
  if not _differentiable(y):
    return [None] * len(xs)

  def row(i):
    grads = api.gradients([y], xs, [_basis(i, n, y_shape, y.dtype)])
    return [None if g is None else _dense(g) for g in grads]

  stacked = map_rows(row, n, dtypes, vectorize)
  return [None if s is None else _finish(s, y_shape, x, y.shape)
          for s, x in zip(stacked, tensors)]


def _handle(x):
  return x.handle if isinstance(x, tf.Variable) else x


def _forward_jacobian(y, xs, tensors, vectorize):
  if not _differentiable(y):
    return [None] * len(xs)
  handles = [_handle(x) for x in tensors]
  if forward.supported([y], handles):
    return [_native_columns(y, h, x, vectorize)
            for h, x in zip(handles, tensors)]
  u = tf.zeros_like(y)
  grads = api.gradients([y], xs, [u])
  out = []
  for g, x in zip(grads, tensors):
    out.append(None if g is None else _columns(y, u, g, x, vectorize))
  return out


def _native_columns(y, handle, x, vectorize):
  """d y / d x by forward rules, one jvp per entry of x: in one batched
  pass with x's identity basis as the tangent (x's shape static and
  vectorize=True), else vectorized with pfor or in a while_loop."""
  shape = _value_shape(x)
  if vectorize and shape.is_fully_defined():
    (stacked,) = forward.batched_tangents_or_none(
        [y], [handle], [forward.Basis(shape, _value_dtype(x))])
    return None if stacked is None else _columns_to_jacobian(stacked, y, x)
  n, x_shape = _x_size(x), _shape_of(x)

  def column(j):
    e = _basis(j, n, x_shape, _value_dtype(x))
    return forward.tangents_or_none([y], [handle], [e])

  (stacked,) = map_rows(column, n, [y.dtype], vectorize)
  return None if stacked is None else _columns_to_jacobian(stacked, y, x)


def _columns(y, u, g, x, vectorize):
  """d y / d x, one jvp per entry of x, as y.shape + x.shape."""
  n = _x_size(x)
  x_shape = _shape_of(x)

  def column(j):
    ys, grad_ys = _pull_back(g, _basis(j, n, x_shape, _value_dtype(x)))
    (d,) = api.gradients([ys], [u], [grad_ys])
    return [None if d is None else _dense(d)]

  (stacked,) = map_rows(column, n, [y.dtype], vectorize)
  if stacked is None:
    return None
  return _columns_to_jacobian(stacked, y, x)


def _columns_to_jacobian(stacked, y, x):
  """[n] + y.shape columns -> y.shape + x.shape."""
  rank = y.shape.rank
  if rank is None:
    rank = tf.rank(y)
    perm = tf.concat([tf.range(1, rank + 1), [0]], 0)
  else:
    perm = list(range(1, rank + 1)) + [0]
  cols = tf.transpose(stacked, perm)             # y.shape + [n]
  return _finish_columns(cols, y, x)


def _finish_columns(cols, y, x):
  x_shape = _shape_of(x)
  out = tf.reshape(cols, _concat_shapes(_shape_of(y), x_shape))
  out.set_shape(y.shape.concatenate(_value_shape(x)))
  return out


@_no_autograph
def batch_jacobian(y, x, *, vectorize=True,
                   unconnected_gradients=_NONE, mode=None,
                   name="batch_jacobian"):
  """`GradientTape.batch_jacobian(y, x)` in a graph: for y[b, ...] where
  y[i] depends on x[i] alone, d y[i] / d x[i] stacked over i, of shape
  [b] + y.shape[1:] + x.shape[1:].

  Reverse mode runs one vjp per entry of a row of y, forward mode one jvp
  per entry of a row of x; mode=None takes the fewer. As TF's, an
  unconnected x gives zeros either way.
  """
  _graph_only("batch_jacobian")
  _unconnected(unconnected_gradients)
  y, x = _as_tensors([y, x], "arguments")
  if not (y.shape.with_rank_at_least(2) and x.shape.with_rank_at_least(2)
          and y.shape[0:1].is_compatible_with(x.shape[0:1])):
    raise ValueError(f"Need first dimension of target shape ({y.shape}) and "
                     f"source shape ({x.shape}) to match.")
  with tf.name_scope(name):
    y_rows = (y.shape[1:].num_elements() if y.shape[1:].is_fully_defined()
              else None)
    x_rows = (x.shape[1:].num_elements() if x.shape[1:].is_fully_defined()
              else None)
    batch = tf.shape(y)[0]
    flat_y = tf.reshape(y, [batch, -1])
    if _mode(mode, x_rows, y_rows,
             lambda: forward.supported([flat_y], [_handle(x)])) == "forward":
      out = _batch_forward(y, flat_y, x, vectorize)
    else:
      out = _batch_reverse(flat_y, x, vectorize)
    shape = tf.concat([tf.shape(y), tf.shape(x)[1:]], 0)
    static = y.shape.concatenate(x.shape[1:])
    if out is None:
      out = tf.zeros(shape, y.dtype)
    else:
      out = tf.reshape(out, shape)
    out.set_shape(static)
    return out


def _batch_reverse(flat_y, x, vectorize):
  m = (flat_y.shape[1] if flat_y.shape[1] is not None
       else tf.shape(flat_y)[1])
  batch = tf.shape(flat_y)[0]

  def row(j):
    e = tf.tile(tf.one_hot([j], m, dtype=flat_y.dtype), [batch, 1])
    (g,) = api.gradients([flat_y], [x], [e])
    return [None if g is None else _dense(g)]

  (stacked,) = map_rows(row, m, [flat_y.dtype], vectorize, "batch_jacobian")
  if stacked is None:
    return None
  perm = tf.concat([[1, 0], tf.range(2, tf.rank(stacked))], 0)
  return tf.transpose(stacked, perm)            # [b, m, x_rest...]


def _batch_forward(y, flat_y, x, vectorize):
  native = forward.supported([flat_y], [_handle(x)])
  if not native:
    u = tf.zeros_like(flat_y)
    (g,) = api.gradients([flat_y], [x], [u])
    if g is None:
      return None
  if native and vectorize and x.shape[1:].is_fully_defined():
    (stacked,) = forward.batched_tangents_or_none(
        [flat_y], [_handle(x)],
        [forward.Basis(x.shape, x.dtype, rows=True, like=x)])
    return None if stacked is None else tf.transpose(stacked, [1, 2, 0])
  flat_x = tf.reshape(x, [tf.shape(x)[0], -1])
  k = (flat_x.shape[1] if flat_x.shape[1] is not None
       else tf.shape(flat_x)[1])
  batch = tf.shape(x)[0]

  def column(j):
    e = tf.reshape(tf.tile(tf.one_hot([j], k, dtype=x.dtype), [batch, 1]),
                   tf.shape(x))
    if native:
      return forward.tangents_or_none([flat_y], [_handle(x)], [e])
    ys, grad_ys = _pull_back(g, e)
    (d,) = api.gradients([ys], [u], [grad_ys])
    return [None if d is None else _dense(d)]

  (stacked,) = map_rows(column, k, [y.dtype], vectorize, "batch_jacobian")
  if stacked is None:
    return None
  return tf.transpose(stacked, [1, 2, 0])       # [b, m, k]
