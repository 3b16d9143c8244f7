"""Graph-mode model builders shared by the command-line tools.

Each `build_<name>(**sizes)` adds a small but real model to the current
default `tf.Graph` and returns `(ys, xs)`: a list of loss tensors and the
list of trainable `tf.Variable`s to differentiate against. Layers are built
from raw TF ops and initialised from a numpy seed, so two builds with the
same sizes and seed are identical.
"""

import contextlib
import inspect
import math

import numpy as np
import tensorflow as tf


class _Init:
  """Deterministic parameter and data factory for one model build."""

  def __init__(self, seed, dtype):
    self.rng = np.random.RandomState(seed)
    self.dtype = tf.as_dtype(dtype)
    self.variables = []

  def variable(self, shape, name, scale=None, value=None):
    if value is None:
      fan_in = shape[0] if len(shape) > 1 else 1
      scale = (1.0 / math.sqrt(fan_in)) if scale is None else scale
      value = self.rng.randn(*shape) * scale
    v = tf.Variable(np.asarray(value, self.dtype.as_numpy_dtype), name=name)
    self.variables.append(v)
    return v

  def data(self, shape, name):
    return tf.constant(self.rng.randn(*shape).astype(
        self.dtype.as_numpy_dtype), name=name)

  def labels(self, shape, classes, name):
    return tf.constant(self.rng.randint(0, classes, size=shape),
                       dtype=tf.int32, name=name)


def _dense(init, x, units, name, activation=tf.nn.relu):
  """MatMul + BiasAdd (+ activation)."""
  with tf.name_scope(name):
    w = init.variable([int(x.shape[-1]), units], "kernel")
    b = init.variable([units], "bias", value=np.zeros([units]))
    y = tf.nn.bias_add(tf.matmul(x, w), b)
    return activation(y) if activation is not None else y


def _xent(logits, labels, classes):
  """Mean softmax cross-entropy against one-hot labels."""
  onehot = tf.one_hot(labels, classes, dtype=logits.dtype)
  return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(
      labels=onehot, logits=logits), name="loss")


def _sparse_xent(logits, labels):
  return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=labels, logits=logits), name="loss")


def _layer_norm(init, x, name):
  """Layer norm over the last axis, statistics via tf.nn.moments."""
  with tf.name_scope(name):
    d = int(x.shape[-1])
    gamma = init.variable([d], "gamma", value=np.ones([d]))
    beta = init.variable([d], "beta", value=np.zeros([d]))
    mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mean) * tf.math.rsqrt(var + 1e-5) * gamma + beta


def _gelu(x):
  return 0.5 * x * (1.0 + tf.math.erf(x / math.sqrt(2.0)))


# ----- Models -----


def build_mlp(depth=4, width=64, batch=32, classes=10, seed=0,
              dtype="float32"):
  """`depth` Dense+ReLU layers of `width`, a linear head, softmax xent."""
  init = _Init(seed, dtype)
  h = init.data([batch, width], "inputs")
  labels = init.labels([batch], classes, "labels")
  for i in range(depth):
    h = _dense(init, h, width, f"dense_{i}")
  logits = _dense(init, h, classes, "head", activation=None)
  return [_xent(logits, labels, classes)], init.variables


def build_cnn(batch=8, size=16, channels=8, classes=10, seed=0,
              dtype="float32"):
  """conv-relu-maxpool, conv-relu-avgpool, fused batch norm (moments-based
  for float64, which FusedBatchNormV3 lacks), dense head."""
  init = _Init(seed, dtype)
  images = init.data([batch, size, size, 3], "images")
  labels = init.labels([batch], classes, "labels")

  def conv(x, out_channels, name):
    with tf.name_scope(name):
      k = init.variable([3, 3, int(x.shape[-1]), out_channels], "kernel",
                        scale=1.0 / math.sqrt(9 * int(x.shape[-1])))
      b = init.variable([out_channels], "bias",
                        value=np.zeros([out_channels]))
      y = tf.nn.conv2d(x, k, strides=1, padding="SAME")
      return tf.nn.relu(tf.nn.bias_add(y, b))

  h = conv(images, channels, "conv_0")
  h = tf.nn.max_pool2d(h, ksize=2, strides=2, padding="VALID")
  h = conv(h, 2 * channels, "conv_1")
  h = tf.nn.avg_pool2d(h, ksize=2, strides=2, padding="VALID")
  with tf.name_scope("batch_norm"):
    c = int(h.shape[-1])
    scale = init.variable([c], "scale", value=np.ones([c]))
    offset = init.variable([c], "offset", value=np.zeros([c]))
    if init.dtype == tf.float64:  # FusedBatchNormV3 has no float64 kernel
      mean, var = tf.nn.moments(h, axes=[0, 1, 2])
      h = tf.nn.batch_normalization(h, mean, var, offset, scale, 1e-3)
    else:
      h, _, _ = tf.compat.v1.nn.fused_batch_norm(h, scale, offset,
                                                  is_training=True)
  h = tf.reshape(h, [batch, -1])
  h = _dense(init, h, 32, "dense")
  logits = _dense(init, h, classes, "head", activation=None)
  return [_sparse_xent(logits, labels)], init.variables


def build_resnet(blocks=50, batch=16, size=16, channels=32, classes=10,
                 seed=0, dtype="float32"):
  """A stem conv, `blocks` residual blocks (conv-relu-conv, added to the
  block's input, relu), global average pooling, dense head."""
  init = _Init(seed, dtype)
  images = init.data([batch, size, size, 3], "images")
  labels = init.labels([batch], classes, "labels")

  def conv(x, name):
    k = init.variable([3, 3, int(x.shape[-1]), channels], name,
                      scale=0.5 / math.sqrt(9 * int(x.shape[-1])))
    return tf.nn.conv2d(x, k, strides=1, padding="SAME")

  h = tf.nn.relu(conv(images, "stem"))
  for i in range(blocks):
    with tf.name_scope(f"block_{i}"):
      r = conv(tf.nn.relu(conv(h, "conv_a")), "conv_b")
      h = tf.nn.relu(h + r)
  h = tf.reduce_mean(h, axis=[1, 2])
  logits = _dense(init, h, classes, "head", activation=None)
  return [_sparse_xent(logits, labels)], init.variables


def build_transformer(blocks=1, batch=4, seq=16, d_model=64, heads=4,
                      vocab=128, seed=0, dtype="float32"):
  """Token + position embeddings, `blocks` pre-LN attention/GELU-MLP blocks,
  a final layer norm and an untied output projection; next-token xent."""
  init = _Init(seed, dtype)
  head_dim = d_model // heads
  tokens = init.labels([batch, seq], vocab, "tokens")
  targets = init.labels([batch, seq], vocab, "targets")
  embedding = init.variable([vocab, d_model], "embedding", scale=0.1)
  positions = init.variable([seq, d_model], "positions", scale=0.1)
  h = tf.gather(embedding, tokens) + positions

  for i in range(blocks):
    with tf.name_scope(f"block_{i}"):
      a = _layer_norm(init, h, "ln_attn")
      with tf.name_scope("attention"):
        wq = init.variable([d_model, heads, head_dim], "wq")
        wk = init.variable([d_model, heads, head_dim], "wk")
        wv = init.variable([d_model, heads, head_dim], "wv")
        wo = init.variable([heads, head_dim, d_model], "wo",
                           scale=1.0 / math.sqrt(d_model))
        q = tf.einsum("bsd,dhk->bhsk", a, wq)
        k = tf.einsum("bsd,dhk->bhsk", a, wk)
        v = tf.einsum("bsd,dhk->bhsk", a, wv)
        scores = tf.matmul(q, k, transpose_b=True) / math.sqrt(head_dim)
        probs = tf.nn.softmax(scores, axis=-1)
        context = tf.matmul(probs, v)                      # BatchMatMulV2
        h = h + tf.einsum("bhsk,hkd->bsd", context, wo)
      m = _layer_norm(init, h, "ln_mlp")
      with tf.name_scope("mlp"):
        w1 = init.variable([d_model, 4 * d_model], "w1")
        b1 = init.variable([4 * d_model], "b1", value=np.zeros([4 * d_model]))
        w2 = init.variable([4 * d_model, d_model], "w2")
        b2 = init.variable([d_model], "b2", value=np.zeros([d_model]))
        u = _gelu(tf.einsum("bsd,df->bsf", m, w1) + b1)
        h = h + tf.einsum("bsf,fd->bsd", u, w2) + b2

  h = _layer_norm(init, h, "ln_final")
  with tf.name_scope("output"):
    w = init.variable([d_model, vocab], "kernel")
    logits = tf.reshape(tf.matmul(tf.reshape(h, [-1, d_model]), w),
                        [batch, seq, vocab])
  return [_sparse_xent(logits, targets)], init.variables


def build_embedding(vocab=1000, dim=32, batch=32, bag=8, classes=10, seed=0,
                    dtype="float32"):
  """Bag-of-ids: embedding_lookup (IndexedSlices gradient), mean pooling,
  a hidden layer and a softmax head."""
  init = _Init(seed, dtype)
  ids = init.labels([batch, bag], vocab, "ids")
  labels = init.labels([batch], classes, "labels")
  table = init.variable([vocab, dim], "table", scale=0.1)
  pooled = tf.reduce_mean(tf.nn.embedding_lookup(table, ids), axis=1)
  h = _dense(init, pooled, dim, "dense")
  logits = _dense(init, h, classes, "head", activation=None)
  return [_xent(logits, labels, classes)], init.variables


def build_fanout(n=100, size=16, seed=0, dtype="float32"):
  """One x consumed by `n` ops (x * c_i -> tanh), their results summed."""
  init = _Init(seed, dtype)
  x = init.variable([size], "x", scale=1.0)
  coeffs = init.rng.randn(n, size).astype(init.dtype.as_numpy_dtype)
  t = tf.convert_to_tensor(x)
  terms = [tf.tanh(t * coeffs[i]) for i in range(n)]
  return [tf.reduce_sum(tf.add_n(terms), name="loss")], init.variables


def build_many_ys(n_ys=10, n_xs=10, size=4, seed=0, dtype="float32"):
  """`n_ys` losses over `n_xs` variables; y_i reads x_(i mod M) and
  x_((7i+1) mod M), so every x feeds several ys."""
  init = _Init(seed, dtype)
  xs = [init.variable([size], f"x_{j}", scale=1.0) for j in range(n_xs)]
  reads = [tf.convert_to_tensor(x) for x in xs]
  ys = []
  for i in range(n_ys):
    a, b = reads[i % n_xs], reads[(7 * i + 1) % n_xs]
    ys.append(tf.reduce_sum(tf.sin(a) * b + float(i % 5) * a, name=f"y_{i}"))
  return ys, init.variables


def build_while_rnn(steps=8, batch=8, hidden=32, features=16, classes=10,
                    seed=0, dtype="float32"):
  """An Elman RNN cell run by tf.while_loop (v2 control flow) over `steps`
  time steps; softmax xent on the final state."""
  init = _Init(seed, dtype)
  inputs = init.data([steps, batch, features], "inputs")
  labels = init.labels([batch], classes, "labels")
  w = init.variable([features, hidden], "w")
  u = init.variable([hidden, hidden], "u")
  b = init.variable([hidden], "b", value=np.zeros([hidden]))

  def body(t, h):
    x_t = tf.gather(inputs, t)
    return t + 1, tf.tanh(tf.matmul(x_t, w) + tf.matmul(h, u) + b)

  h0 = tf.zeros([batch, hidden], dtype=init.dtype)
  _, h = tf.while_loop(lambda t, h: t < steps, body,
                       (tf.constant(0), h0), maximum_iterations=steps)
  logits = _dense(init, h, classes, "head", activation=None)
  return [_xent(logits, labels, classes)], init.variables


def build_nested_function(depth=3, width=32, batch=16, classes=10, seed=0,
                          dtype="float32"):
  """A loss whose layers are tf.function helpers calling a nested
  tf.function (PartitionedCall ops in the graph)."""
  init = _Init(seed, dtype)
  h = init.data([batch, width], "inputs")
  labels = init.labels([batch], classes, "labels")

  @tf.function(autograph=False)
  def affine(x, w, b):
    return tf.nn.bias_add(tf.matmul(x, w), b)

  @tf.function(autograph=False)
  def layer(x, w, b):
    return tf.nn.relu(affine(x, w, b)) + 0.1 * tf.sin(x)

  for i in range(depth):
    w = init.variable([width, width], f"w_{i}")
    b = init.variable([width], f"b_{i}", value=np.zeros([width]))
    h = layer(h, w, b)
  logits = _dense(init, h, classes, "head", activation=None)
  return [_xent(logits, labels, classes)], init.variables


@contextlib.contextmanager
def v1_control_flow():
  """v1 control flow (Enter/Exit frames), as
  `tf.compat.v1.disable_control_flow_v2()` gives a TF1 program, while a
  model of `V1_MODELS` is built and differentiated (TF's rules for the
  TensorArrays of a v1 loop need it too); the previous setting is restored
  afterwards. Not thread-safe: the setting is process-wide in TF."""
  was_v2 = tf.compat.v1.control_flow_v2_enabled()
  tf.compat.v1.disable_control_flow_v2()
  try:
    yield
  finally:
    if was_v2:
      tf.compat.v1.enable_control_flow_v2()


class _LSTMCell:
  """An LSTM cell in raw ops with the RNNCell interface `dynamic_rnn`
  takes (state: (c, h))."""

  def __init__(self, init, features, hidden, name):
    self.hidden = hidden
    self.kernel = init.variable([features + hidden, 4 * hidden],
                                f"{name}/kernel")
    self.bias = init.variable([4 * hidden], f"{name}/bias",
                              value=np.zeros([4 * hidden]))
    self.dtype = init.dtype

  @property
  def state_size(self):
    return (self.hidden, self.hidden)

  @property
  def output_size(self):
    return self.hidden

  def zero_state(self, batch_size, dtype):
    zeros = tf.zeros([batch_size, self.hidden], dtype)
    return (zeros, zeros)

  def get_initial_state(self, inputs=None, batch_size=None, dtype=None):
    return self.zero_state(batch_size, dtype or self.dtype)

  def __call__(self, inputs, state):
    c, h = state
    gates = tf.matmul(tf.concat([inputs, h], 1), self.kernel) + self.bias
    i, j, f, o = tf.split(gates, 4, axis=1)
    c = tf.sigmoid(f + 1.0) * c + tf.sigmoid(i) * tf.tanh(j)
    h = tf.sigmoid(o) * tf.tanh(c)
    return h, (c, h)


def build_dynamic_rnn_v1(steps=100, batch=16, hidden=32, features=16,
                         classes=10, seed=0, dtype="float32"):
  """A TF1 program: an LSTM run by `tf.compat.v1.nn.dynamic_rnn` over
  `steps` time steps with v1 control flow (a v1 while loop, TensorArrays);
  softmax xent on the last output."""
  init = _Init(seed, dtype)
  with v1_control_flow():
    inputs = init.data([batch, steps, features], "inputs")
    labels = init.labels([batch], classes, "labels")
    cell = _LSTMCell(init, features, hidden, "lstm")
    outputs, _ = tf.compat.v1.nn.dynamic_rnn(cell, inputs, dtype=init.dtype)
    logits = _dense(init, outputs[:, -1], classes, "head", activation=None)
    return [_xent(logits, labels, classes)], init.variables


def build_nested_scan_v1(rows=10, cols=10, width=32, seed=0,
                         dtype="float32"):
  """A TF1 program: `tf.scan` over `rows` whose step is a `tf.scan` over
  `cols` (nested v1 while loops), a tanh recurrence with weight matrices."""
  init = _Init(seed, dtype)
  with v1_control_flow():
    data = init.data([rows, cols, width], "inputs")
    w = init.variable([width, width], "w")
    u = init.variable([width, width], "u")

    def row(acc, r):
      inner = tf.scan(lambda a, e: tf.tanh(tf.matmul(a, w) + e), r[:, None],
                      initializer=acc)
      return tf.tanh(tf.matmul(inner[-1], u))
    out = tf.scan(row, data, initializer=tf.zeros([1, width], init.dtype))
    return [tf.reduce_mean(tf.square(out))], init.variables


# Models built with v1 control flow: differentiate them within
# `v1_control_flow()` too.
V1_MODELS = frozenset(["dynamic_rnn_v1", "nested_scan_v1"])

BUILDERS = {
    "mlp": build_mlp,
    "cnn": build_cnn,
    "resnet": build_resnet,
    "transformer": build_transformer,
    "embedding": build_embedding,
    "fanout": build_fanout,
    "many_ys": build_many_ys,
    "while_rnn": build_while_rnn,
    "nested_function": build_nested_function,
    "dynamic_rnn_v1": build_dynamic_rnn_v1,
    "nested_scan_v1": build_nested_scan_v1,
}


def build(name, **sizes):
  """Builds model `name` in the default graph with the sizes it accepts
  (others are ignored); returns (ys, xs)."""
  builder = BUILDERS[name]
  accepted = inspect.signature(builder).parameters
  return builder(**{k: v for k, v in sizes.items()
                    if k in accepted and v is not None})
