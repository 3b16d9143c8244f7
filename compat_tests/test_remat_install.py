"""`tfgrad.install(checkpoints=...)`: TF's own entry points (v1 optimizers'
`minimize`, `tf.gradients` in a `tf.function`, Keras code calling
`tf.gradients`) rematerialize, and train to stock's weights; the setting's
precedence across calls and threads; uninstall restores TF."""

import threading

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.ops import gradients as gradients_module
from tensorflow.python.ops import gradients_impl
from tensorflow.python.ops import gradients_util

import tfgrad
from tfgrad import remat

_ENTRY_POINTS = [
    (tf, "gradients"), (tf.compat.v1, "gradients"),
    (gradients_impl, "gradients"), (gradients_impl, "gradients_v2"),
    (gradients_module, "gradients"), (gradients_util, "_GradientsHelper"),
    (tf, "hessians"), (tf.compat.v1, "hessians")]

_STEPS = 5


@pytest.fixture
def segments(monkeypatch):
  """A list that grows by one per recomputed segment; tfgrad is
  uninstalled afterwards."""
  calls = []
  real = remat._Backprop._segment  # pylint: disable=protected-access

  def counting(self, c, *args):
    calls.append(c.name)
    return real(self, c, *args)
  monkeypatch.setattr(remat._Backprop, "_segment", counting)  # pylint: disable=protected-access
  yield calls
  tfgrad.uninstall()


def _init(seed, shape, scale=0.3):
  value = (np.random.RandomState(seed).randn(*shape) * scale).astype(
      np.float32)
  return lambda shape, dtype=None: tf.constant(value, dtype=dtype)


def _layers():
  """Embedding (an IndexedSlices gradient), six tanh Dense layers, layer
  normalization and a linear head: real tf.keras layers, fixed weights."""
  layers = [tf.keras.layers.Embedding(20, 8,
                                      embeddings_initializer=_init(1, (20, 8))),
            tf.keras.layers.Flatten()]
  for i in range(6):
    fan_in = 32 if i == 0 else 16
    layers.append(tf.keras.layers.Dense(
        16, activation="tanh", kernel_initializer=_init(i + 2, (fan_in, 16))))
  layers += [tf.keras.layers.LayerNormalization(),
             tf.keras.layers.Dense(1, kernel_initializer=_init(9, (16, 1)))]
  return layers


def _data():
  tokens = np.random.RandomState(10).randint(0, 20, (32, 4)).astype(np.int32)
  target = np.random.RandomState(11).randn(32, 1).astype(np.float32)
  return tokens, target


def _forward(layers, tokens):
  h = tokens
  for layer in layers:
    h = layer(h)
  return h


def _weights(layers):
  return [v for layer in layers for v in layer.trainable_weights]


def _train_in_session():
  """5 steps of a v1 Adam optimizer's `minimize` in a tf.Graph."""
  graph = tf.Graph()
  with graph.as_default():
    tokens, target = _data()
    layers = _layers()
    loss = tf.reduce_mean(tf.square(_forward(layers, tf.constant(tokens))
                                    - target))
    step = tf.compat.v1.train.AdamOptimizer(0.05).minimize(loss)
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      first = sess.run([v.value for v in _weights(layers)])
      for _ in range(_STEPS):
        sess.run(step)
      return first, sess.run([v.value for v in _weights(layers)])


def _train_in_function():
  """5 calls of a tf.function training step calling `tf.gradients`."""
  tokens, target = _data()
  layers = _layers()
  _forward(layers, tokens)  # builds the layers' variables
  variables = _weights(layers)
  first = [v.numpy() for v in variables]

  @tf.function
  def step(tokens, target):
    loss = tf.reduce_mean(tf.square(_forward(layers, tokens) - target))
    grads = tf.gradients(loss, [v.value for v in variables])
    for v, g in zip(variables, grads):
      v.assign_sub(0.05 * tf.convert_to_tensor(g))

  for _ in range(_STEPS):
    step(tokens, target)
  return first, [v.numpy() for v in variables]


class KerasStep(tf.keras.Model):
  """Keras code calling tf.gradients: a train_step run by `fit`."""

  def train_step(self, data):
    x, y = data
    loss = tf.reduce_mean(tf.square(self(x, training=True) - y))
    variables = self.trainable_variables
    grads = tf.gradients(loss, [v.value for v in variables])
    self.optimizer.apply(grads, variables)
    return {"loss": loss}


def _train_with_fit():
  tokens, target = _data()
  inputs = tf.keras.Input((4,), dtype="int32")
  model = KerasStep(inputs, _forward(_layers(), inputs))
  model.compile(optimizer=tf.keras.optimizers.SGD(0.05))
  first = [v.numpy() for v in model.trainable_variables]
  model.fit(tokens, target, batch_size=32, epochs=_STEPS, verbose=0,
            shuffle=False)
  return first, [v.numpy() for v in model.trainable_variables]


@pytest.mark.parametrize("train", [_train_in_session, _train_in_function,
                                   _train_with_fit])
def test_training_with_install_memory_gives_stock_weights(train, segments):
  first, stock = train()
  assert not segments
  tfgrad.install(checkpoints="memory")
  try:
    _, ours = train()
  finally:
    tfgrad.uninstall()
  assert segments, "install(checkpoints='memory') recomputed nothing"
  moved = max(float(np.max(np.abs(a - b))) for a, b in zip(first, stock))
  assert moved > 1e-2  # the steps did train
  assert len(ours) == len(stock)
  for a, b in zip(ours, stock):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _chain():
  rng = np.random.RandomState(0)
  w = tf.Variable(rng.randn(8, 8).astype(np.float32) * 0.4)
  h = tf.constant(rng.randn(4, 8).astype(np.float32))
  for _ in range(8):
    h = tf.tanh(h @ w)
  return tf.reduce_sum(h), w


def _recomputes(fn):
  """Whether the gradient `fn(y, w)` builds recomputes anything, with its
  value against stock's."""
  graph = tf.Graph()
  with graph.as_default():
    y, w = _chain()
    (g,) = fn(y, w)
    copies = [op for op in graph.get_operations()
              if op.name.endswith("_remat")]
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      value = sess.run(g)
  return bool(copies), value


def _stock_value():
  graph = tf.Graph()
  with graph.as_default():
    y, w = _chain()
    (g,) = tf.gradients(y, [w])
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      return sess.run(g)


def test_precedence_explicit_then_block_then_install(segments):
  stock = _stock_value()
  assert tf.gradients is not tfgrad.gradients
  tfgrad.install(checkpoints="memory")
  try:
    copied, value = _recomputes(tf.gradients)
    assert copied
    np.testing.assert_allclose(value, stock, rtol=1e-5)
    # An explicit value wins: a budget everything fits in is the plain pass.
    copied, value = _recomputes(lambda y, w: tfgrad.gradients(
        y, [w], checkpoints=tfgrad.MemoryBudget(1 << 40)))
    assert not copied
    np.testing.assert_allclose(value, stock, rtol=1e-5)
    # A block's value wins over install's, on its own thread.
    with tfgrad.installed(checkpoints=tfgrad.MemoryBudget(1 << 40)):
      copied, _ = _recomputes(tf.gradients)
      assert not copied
      with tfgrad.installed():  # None: keeps the enclosing block's value
        assert not _recomputes(tf.gradients)[0]
    assert _recomputes(tf.gradients)[0]
    tfgrad.install()  # installing again sets the default anew
    assert not _recomputes(tf.gradients)[0]
  finally:
    tfgrad.uninstall()
  assert not _recomputes(tfgrad.gradients)[0]


def test_a_block_setting_stays_on_its_thread(segments):
  inside, release = threading.Event(), threading.Event()
  seen = {}

  def block():
    with tfgrad.installed(checkpoints="memory"):
      seen["block"] = _recomputes(tf.gradients)[0]
      inside.set()
      release.wait(60)

  thread = threading.Thread(target=block)
  thread.start()
  try:
    assert inside.wait(60)
    assert tf.gradients is tfgrad.gradients  # installed, for every thread
    seen["other"] = _recomputes(tf.gradients)[0]
  finally:
    release.set()
    thread.join()
  assert seen == {"block": True, "other": False}
  assert tf.gradients is not tfgrad.gradients


def test_install_and_uninstall_restore_the_same_objects(segments):
  before = [getattr(module, name) for module, name in _ENTRY_POINTS]
  tfgrad.install(checkpoints="memory")
  assert tf.gradients is tfgrad.gradients
  tfgrad.uninstall()
  assert [getattr(module, name) for module, name in _ENTRY_POINTS] == before
  with tfgrad.installed(checkpoints="speed"):
    assert tf.compat.v1.gradients is tfgrad.compat.v1.gradients
  assert [getattr(module, name) for module, name in _ENTRY_POINTS] == before
  # The default went with the install: TF's calls are stock, tfgrad's plain.
  assert not _recomputes(tfgrad.gradients)[0]


@pytest.mark.parametrize("bad", ["fast", 3, "list"])
def test_bad_install_checkpoints_change_nothing(bad, segments):
  before = [getattr(module, name) for module, name in _ENTRY_POINTS]
  with tf.Graph().as_default():
    value = [tf.constant(1.0)] if bad == "list" else bad
    with pytest.raises(ValueError, match="checkpoints"):
      tfgrad.install(checkpoints=value)
    with pytest.raises(ValueError, match="checkpoints"):
      with tfgrad.installed(checkpoints=value):
        pass
  assert [getattr(module, name) for module, name in _ENTRY_POINTS] == before
  assert not _recomputes(tfgrad.gradients)[0]


def test_hessians_under_an_installed_default_match_stock(segments):
  """tf.hessians (routed to tfgrad.hessians) takes the default for its
  first-order gradient: values stay stock's."""
  with tf.Graph().as_default():
    x = tf.constant(np.random.RandomState(0).randn(4).astype(np.float32))
    h = x
    for _ in range(6):
      h = tf.tanh(h * 1.3 + 0.1)
    y = tf.reduce_sum(h * h)
    (stock,) = tf.hessians(y, x)
    tfgrad.install(checkpoints="memory")
    try:
      (ours,) = tf.hessians(y, x)
    finally:
      tfgrad.uninstall()
    assert segments
    with tf.compat.v1.Session() as sess:
      a, b = sess.run((ours, stock))
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
