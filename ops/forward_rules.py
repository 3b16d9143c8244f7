"""Forward-mode (jvp) rules for the common families: `rule(op, *tangents)`
returns one tangent per output (None where none), from the tangents of
op.inputs (None for inputs no x reaches). `tfgrad.jvp` uses them when every
op between the xs and the ys has one, the double-reverse construction
otherwise."""

import tensorflow as tf

from tfgrad.emit import raw
from tfgrad.forward import RegisterForward


# ----- helpers -----

def _fit(t, out):
  """t broadcast to out's shape (an operand smaller than the output)."""
  if t.shape.is_fully_defined() and t.shape == out.shape:
    return t
  return tf.broadcast_to(t, tf.shape(out))


def _add(a, b):
  if a is None:
    return b
  if b is None:
    return a
  return a + b


def _sum_fit(out, *terms):
  """The sum of the non-None terms, broadcast to out's shape."""
  total = None
  for t in terms:
    total = _add(total, t)
  return None if total is None else _fit(total, out)


def def_unary(op_type, derivative):
  """t_y = t_x * derivative(x, y) for an elementwise y = f(x)."""
  @RegisterForward(op_type)
  def _rule(op, t):
    return [t * derivative(op.inputs[0], op.outputs[0])]
  return _rule


def def_linear(op_type):
  """Ops linear in their first input, the rest attributes or indices:
  the tangent goes through the op itself."""
  @RegisterForward(op_type)
  def _rule(op, t, *rest):
    del rest  # shapes, axes, indices: integers, no tangents
    return [None if t is None else _replay(op, [t] + list(op.inputs[1:]))]
  return _rule


def _replay(op, inputs):
  """op applied to other inputs: same type, same attributes."""
  attrs = {k: v for k, v in op.node_def.attr.items()
           if not k.startswith("_")}
  new = tf.compat.v1.get_default_graph().create_op(
      op.type, inputs, [t.dtype for t in op.outputs], attrs=attrs)
  return new.outputs[0]


# ----- elementwise -----

def def_fused(op_type, derivative, fused):
  """As def_unary, with TF's fused gradient kernel `fused(x, y, t)` (one op)
  for real dtypes (the kernels conjugate for complex ones)."""
  @RegisterForward(op_type)
  def _rule(op, t):
    x, y = op.inputs[0], op.outputs[0]
    if x.dtype.is_complex:
      return [t * derivative(x, y)]
    return [fused(x, y, t)]
  return _rule


def_fused("Tanh", lambda x, y: 1.0 - y * y,
          lambda x, y, t: raw.TanhGrad(y=y, dy=t))
def_fused("Sigmoid", lambda x, y: y * (1.0 - y),
          lambda x, y, t: raw.SigmoidGrad(y=y, dy=t))
def_fused("Sqrt", lambda x, y: 0.5 / y,
          lambda x, y, t: raw.SqrtGrad(y=y, dy=t))
def_fused("Rsqrt", lambda x, y: -0.5 * y / x,
          lambda x, y, t: raw.RsqrtGrad(y=y, dy=t))
def_fused("Reciprocal", lambda x, y: -y * y,
          lambda x, y, t: raw.ReciprocalGrad(y=y, dy=t))
def_unary("Exp", lambda x, y: y)
def_unary("Log", lambda x, y: tf.math.reciprocal(x))
def_unary("Sin", lambda x, y: tf.cos(x))
def_unary("Cos", lambda x, y: -tf.sin(x))
def_unary("Square", lambda x, y: 2.0 * x)


@RegisterForward("Relu")
def _relu(op, t):
  """t where x > 0."""
  return [raw.ReluGrad(gradients=t, features=op.inputs[0])]


@RegisterForward("Softplus")
def _softplus(op, t):
  """t * sigmoid(x)."""
  return [raw.SoftplusGrad(gradients=t, features=op.inputs[0])]


@RegisterForward("Neg")
def _neg(op, t):
  del op
  return [-t]


@RegisterForward("Identity")
def _identity(op, t):
  del op
  return [t]


@RegisterForward("ReadVariableOp")
def _read(op, t):
  del op
  return [t]


@RegisterForward("AddV2")
def _add_v2(op, ta, tb):
  return [_sum_fit(op.outputs[0], ta, tb)]


RegisterForward("Add")(_add_v2)


@RegisterForward("Sub")
def _sub(op, ta, tb):
  return [_sum_fit(op.outputs[0], ta, None if tb is None else -tb)]


@RegisterForward("Mul")
def _mul(op, ta, tb):
  a, b = op.inputs
  return [_sum_fit(op.outputs[0], None if ta is None else ta * b,
                   None if tb is None else a * tb)]


@RegisterForward("RealDiv")
def _div(op, ta, tb):
  a, b = op.inputs
  y = op.outputs[0]
  return [_sum_fit(y, None if ta is None else ta / b,
                   None if tb is None else -tb * y / b)]


@RegisterForward("AddN")
def _add_n(op, *ts):
  return [_sum_fit(op.outputs[0], *ts)]


# ----- matmul, conv, bias -----

@RegisterForward("MatMul")
def _matmul(op, ta, tb):
  a, b = op.inputs
  kw = dict(transpose_a=op.get_attr("transpose_a"),
            transpose_b=op.get_attr("transpose_b"))
  return [_add(None if ta is None else tf.linalg.matmul(ta, b, **kw),
               None if tb is None else tf.linalg.matmul(a, tb, **kw))]


@RegisterForward("BatchMatMulV2")
def _batch_matmul(op, ta, tb):
  a, b = op.inputs
  kw = dict(adjoint_a=op.get_attr("adj_x"), adjoint_b=op.get_attr("adj_y"))
  return [_sum_fit(op.outputs[0],
                   None if ta is None else tf.linalg.matmul(ta, b, **kw),
                   None if tb is None else tf.linalg.matmul(a, tb, **kw))]


@RegisterForward("Conv2D")
def _conv2d(op, tx, tf_):
  x, f = op.inputs
  return [_add(None if tx is None else _replay(op, [tx, f]),
               None if tf_ is None else _replay(op, [x, tf_]))]


@RegisterForward("BiasAdd")
def _bias_add(op, tx, tb):
  if tb is None:
    return [tx]
  base = tf.zeros_like(op.outputs[0]) if tx is None else tx
  return [raw.BiasAdd(value=base, bias=tb,
                      data_format=op.get_attr("data_format"))]


@RegisterForward("MaxPool")
def _max_pool(op, t):
  """The tangent at each window's maximum (MaxPoolGradGrad picks it)."""
  return [raw.MaxPoolGradGrad(
      orig_input=op.inputs[0], orig_output=op.outputs[0], grad=t,
      ksize=op.get_attr("ksize"), strides=op.get_attr("strides"),
      padding=op.get_attr("padding"),
      data_format=op.get_attr("data_format"))]


# ----- reductions and shapes -----

for _type in ("Sum", "Mean", "Reshape", "Transpose", "ExpandDims", "Squeeze",
              "StridedSlice", "Slice", "Tile", "Pad", "Reverse", "ReverseV2",
              "AvgPool", "BroadcastTo", "Cumsum"):
  def_linear(_type)


@RegisterForward("GatherV2")
def _gather(op, tp, ti, ta):
  del ti, ta
  return [None if tp is None else _replay(op, [tp] + list(op.inputs[1:]))]


@RegisterForward("ConcatV2")
def _concat(op, *ts):
  values = op.inputs[:-1]
  if all(t is None for t in ts[:-1]):
    return [None]
  parts = [tf.zeros_like(v) if t is None else t
           for v, t in zip(values, ts[:-1])]
  return [tf.concat(parts, op.inputs[-1])]


# ----- softmax -----

@RegisterForward("Softmax")
def _softmax(op, t):
  """s * (t - <s, t>) along the last axis."""
  s = op.outputs[0]
  return [s * (t - tf.reduce_sum(s * t, -1, keepdims=True))]


@RegisterForward("LogSoftmax")
def _log_softmax(op, t):
  """t - <softmax, t> along the last axis."""
  s = tf.exp(op.outputs[0])
  return [t - tf.reduce_sum(s * t, -1, keepdims=True)]


# ----- binary, less common -----

@RegisterForward("SquaredDifference")
def _squared_difference(op, ta, tb):
  """2 (a - b) (ta - tb)."""
  a, b = op.inputs
  diff = _sum_fit(op.outputs[0], ta, None if tb is None else -tb)
  return [2.0 * (a - b) * diff]


def _select_tangent(op, ta, tb, a_wins):
  """ta where a wins (ties to a, as the gradient rules), else tb."""
  y = op.outputs[0]
  zeros = tf.zeros_like(y)
  ta = zeros if ta is None else _fit(ta, y)
  tb = zeros if tb is None else _fit(tb, y)
  return [tf.where(_fit(a_wins(*op.inputs), y), ta, tb)]


@RegisterForward("Maximum")
def _maximum(op, ta, tb):
  return _select_tangent(op, ta, tb, tf.greater_equal)


@RegisterForward("Minimum")
def _minimum(op, ta, tb):
  return _select_tangent(op, ta, tb, tf.less_equal)
