r"""Benchmarks tfgrad's higher-order functions against their stock TF
counterparts, in one process, the two interleaved.

    python tools/bench_higher.py                  # every case
    python tools/bench_higher.py --cases=hessians_64,jvp_mlp --pairs=21

Cases (tfgrad vs stock):
  hessians_64, hessians_512   tfgrad.hessians vs tf.hessians, the Hessian of
                              an MLP loss in a 64- / 512-entry parameter
                              vector, in a tf.Graph run by a Session
  jacobian_256                tfgrad.jacobian vs GradientTape.jacobian of a
                              256->256 tanh layer, inside a tf.function
  batch_jacobian_256          tfgrad.batch_jacobian vs GradientTape's, the
                              same layer on a batch of 16
  jvp_mlp, jvp_cnn            tfgrad.jvp vs ForwardAccumulator inside a
                              tf.function: an MLP (3 x 256, batch 64) and a
                              conv net, tangents on every weight

Measured: construction time (building thread's CPU clock; for the
tf.function cases, tracing the function), run time (each engine's graph
run back to back, --pairs times after a warm-up), and the ratios as
medians of paired ratios, which cancel the machine's drift; ops added by
the call (jvp: and of those, how many the result needs); the largest
difference between the two results.
"""

import os
import statistics
import sys
import time

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

import tfgrad

FLAGS = flags.FLAGS
flags.DEFINE_list("cases", None, "Subset of cases to run (default: all).")
flags.DEFINE_integer("pairs", 15, "Timed runs per engine, interleaved.")
flags.DEFINE_integer("builds", 5, "Constructions per engine, interleaved.")


# ----- models -----

def _mlp_loss(theta, sizes, seed=0):
  """A tanh MLP whose weights are slices of the vector theta; its loss on
  a fixed batch (sum of squared errors)."""
  rng = np.random.default_rng(seed)
  n_in, hidden, n_out = sizes
  x = tf.constant(rng.standard_normal((32, n_in)), theta.dtype)
  target = tf.constant(rng.standard_normal((32, n_out)), theta.dtype)
  shapes = [(n_in, hidden), (hidden,), (hidden, n_out)]
  parts, start = [], 0
  for s in shapes:
    size = int(np.prod(s))
    parts.append(tf.reshape(theta[start:start + size], s))
    start += size
  w1, b1, w2 = parts
  return tf.reduce_sum((tf.tanh(x @ w1 + b1) @ w2 - target) ** 2)


_HESSIAN_SIZES = {64: (4, 8, 3), 512: (8, 32, 7)}


def _param_count(sizes):
  n_in, hidden, n_out = sizes
  return n_in * hidden + hidden + hidden * n_out


def _layer(rng, n_in, n_out):
  w = tf.constant(rng.standard_normal((n_in, n_out)) / np.sqrt(n_in),
                  tf.float32)
  b = tf.constant(rng.standard_normal(n_out) * 0.1, tf.float32)
  return w, b


def _mlp(x, weights):
  h = x
  for w, b in weights:
    h = tf.tanh(h @ w + b)
  return h


def _cnn(x, weights):
  f1, f2, w, b = weights
  h = tf.nn.relu(tf.nn.conv2d(x, f1, 1, "SAME"))
  h = tf.nn.max_pool2d(h, 2, 2, "VALID")
  h = tf.tanh(tf.nn.conv2d(h, f2, 1, "SAME"))
  h = tf.reshape(h, [tf.shape(h)[0], -1])
  return tf.nn.softmax(h @ w + b)


# ----- measuring -----

def _paired_ratio(ours, theirs, count):
  """(median ours, median stock, median of paired ratios) over `count`
  back-to-back calls of the two zero-argument functions (order
  alternating)."""
  a, b, ratios = [], [], []
  for i in range(count):
    first, second = (ours, theirs) if i % 2 == 0 else (theirs, ours)
    t0 = time.perf_counter()
    first()
    t1 = time.perf_counter()
    second()
    t2 = time.perf_counter()
    o, s = ((t1 - t0), (t2 - t1)) if i % 2 == 0 else ((t2 - t1), (t1 - t0))
    a.append(o)
    b.append(s)
    ratios.append(o / s)
  return statistics.median(a), statistics.median(b), statistics.median(ratios)


def _timed(fn):
  start = time.thread_time()
  out = fn()
  return time.thread_time() - start, out


def _max_diff(a, b):
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(a, b))


# ----- the cases -----

def hessians_case(n):
  sizes = _HESSIAN_SIZES[n]
  assert _param_count(sizes) == n
  theta0 = np.random.default_rng(1).standard_normal(n) * 0.3

  def build(engine):
    graph = tf.Graph()
    with graph.as_default():
      theta = tf.constant(theta0, tf.float32)
      loss = _mlp_loss(theta, sizes)
      before = len(graph.get_operations())
      fn = tfgrad.hessians if engine == "ours" else tf.hessians
      seconds, (h,) = _timed(lambda: fn(loss, theta))
      ops = len(graph.get_operations()) - before
    return graph, h, seconds, ops

  builds = {"ours": [], "stock": []}
  for i in range(FLAGS.builds):
    for engine in (("ours", "stock") if i % 2 == 0 else ("stock", "ours")):
      builds[engine].append(build(engine))
  build_ratio = statistics.median(
      o[2] / s[2] for o, s in zip(builds["ours"], builds["stock"]))
  (g_o, h_o, _, ops_o), (g_s, h_s, _, ops_s) = (builds["ours"][0],
                                                builds["stock"][0])
  sess_o, sess_s = tf.compat.v1.Session(graph=g_o), tf.compat.v1.Session(
      graph=g_s)
  v_o, v_s = sess_o.run(h_o), sess_s.run(h_s)
  run_o, run_s, run_ratio = _paired_ratio(
      lambda: sess_o.run(h_o), lambda: sess_s.run(h_s), FLAGS.pairs)
  return dict(
      case=f"hessians_{n}", counterpart="tf.hessians",
      build_ours_ms=1e3 * statistics.median(b[2] for b in builds["ours"]),
      build_stock_ms=1e3 * statistics.median(b[2] for b in builds["stock"]),
      build_ratio=build_ratio, ops_ours=ops_o, ops_stock=ops_s,
      run_ours_ms=1e3 * run_o, run_stock_ms=1e3 * run_s, run_ratio=run_ratio,
      max_diff=_max_diff([v_o], [v_s]))


def _function_case(name, counterpart, make_fns, args):
  """make_fns() -> (ours, stock) Python functions of args, each returning
  (result tensors, ops of the forward model, index of the first
  derivative op or None); both are traced into
  tf.functions (tracing timed) and run interleaved."""
  ours_py, stock_py = make_fns()
  info = {}

  def wrap(engine, py):
    def body(*a):
      graph = tf.compat.v1.get_default_graph()
      before = len(graph.get_operations())
      out, forward, start = py(*a)
      info[engine] = dict(ops=len(graph.get_operations()) - before - forward)
      if start is not None:
        info[engine]["needed"] = _needed_ops(graph, start, out)
      return out
    return tf.function(body)

  fns = {"ours": wrap("ours", ours_py), "stock": wrap("stock", stock_py)}
  traces = {"ours": [], "stock": []}
  concrete = {}
  for i in range(FLAGS.builds):
    for engine in (("ours", "stock") if i % 2 == 0 else ("stock", "ours")):
      fresh = wrap(engine, ours_py if engine == "ours" else stock_py)
      seconds, concrete[engine] = _timed(
          lambda f=fresh: f.get_concrete_function(*args))
      traces[engine].append(seconds)
  build_ratio = statistics.median(o / s for o, s in zip(traces["ours"],
                                                        traces["stock"]))
  del fns
  v_o = [t.numpy() for t in tf.nest.flatten(concrete["ours"](*args))]
  v_s = [t.numpy() for t in tf.nest.flatten(concrete["stock"](*args))]
  run_o, run_s, run_ratio = _paired_ratio(
      lambda: concrete["ours"](*args), lambda: concrete["stock"](*args),
      FLAGS.pairs)
  return dict(
      case=name, counterpart=counterpart,
      build_ours_ms=1e3 * statistics.median(traces["ours"]),
      build_stock_ms=1e3 * statistics.median(traces["stock"]),
      build_ratio=build_ratio, ops_ours=info["ours"]["ops"],
      ops_stock=info["stock"]["ops"], needed_ours=info["ours"].get("needed"),
      run_ours_ms=1e3 * run_o, run_stock_ms=1e3 * run_s, run_ratio=run_ratio,
      max_diff=_max_diff(v_o, v_s))


def _needed_ops(graph, before, outputs):
  """How many of the ops added after index `before` the outputs need."""
  added = set(graph.get_operations()[before:])
  seen, stack = set(), [t.op for t in tf.nest.flatten(outputs)]
  while stack:
    op = stack.pop()
    if op in seen or op not in added:
      continue
    seen.add(op)
    stack.extend(t.op for t in op.inputs)
    stack.extend(op.control_inputs)
  return len(seen)


def jacobian_case(batch):
  rng = np.random.default_rng(2)
  w, b = _layer(rng, 256, 256)
  x = tf.constant(rng.standard_normal((batch or 1, 256)), tf.float32)
  if batch is None:
    x = x[0]

  def layer(v):
    return tf.tanh(tf.linalg.matvec(w, v, transpose_a=True) + b
                   if batch is None else v @ w + b)

  def make():
    def ours(v):
      graph = tf.compat.v1.get_default_graph()
      start = len(graph.get_operations())
      y = layer(v)
      forward = len(graph.get_operations()) - start
      mark = len(graph.get_operations())
      jac = (tfgrad.jacobian(y, v) if batch is None else
             tfgrad.batch_jacobian(y, v))
      return jac, forward, mark

    def stock(v):
      graph = tf.compat.v1.get_default_graph()
      with tf.GradientTape() as tape:
        tape.watch(v)
        start = len(graph.get_operations())
        y = layer(v)
        forward = len(graph.get_operations()) - start
      jac = (tape.jacobian(y, v) if batch is None else
             tape.batch_jacobian(y, v))
      return jac, forward, None
    return ours, stock

  name = "jacobian_256" if batch is None else "batch_jacobian_256"
  counterpart = ("GradientTape.jacobian" if batch is None else
                 "GradientTape.batch_jacobian")
  return _function_case(name, counterpart, make, [x])


def jvp_case(model):
  rng = np.random.default_rng(3)
  if model == "mlp":
    weights = [_layer(rng, 256, 256) for _ in range(3)]
    x = tf.constant(rng.standard_normal((64, 256)), tf.float32)
    fn = _mlp
    flat = [t for pair in weights for t in pair]
  else:
    flat = [tf.constant(rng.standard_normal(s) * 0.2, tf.float32)
            for s in [(3, 3, 3, 16), (3, 3, 16, 32), (8 * 8 * 32, 10), (10,)]]
    x = tf.constant(rng.standard_normal((16, 16, 16, 3)), tf.float32)
    fn = _cnn
  tangents = [tf.constant(rng.standard_normal(t.shape), tf.float32)
              for t in flat]

  def shaped(ws):
    return [tuple(ws[i:i + 2]) for i in range(0, len(ws), 2)] \
        if model == "mlp" else ws

  def make():
    def ours(v, *ws):
      graph = tf.compat.v1.get_default_graph()
      start = len(graph.get_operations())
      y = fn(v, shaped(list(ws)))
      mark = len(graph.get_operations())
      forward = mark - start
      return tfgrad.jvp(y, list(ws), tangents), forward, mark

    def stock(v, *ws):
      with tf.autodiff.ForwardAccumulator(list(ws), tangents) as acc:
        y = fn(v, shaped(list(ws)))
      return acc.jvp(y), _forward_op_count(fn, v, ws, shaped), None
    return ours, stock

  return _function_case(f"jvp_{model}", "ForwardAccumulator", make,
                        [x] + flat)


def _forward_op_count(fn, v, ws, shaped):
  """Ops the forward model alone adds (counted in a scratch graph)."""
  with tf.Graph().as_default() as g:
    args = [tf.compat.v1.placeholder(t.dtype, t.shape) for t in [v] + list(ws)]
    start = len(g.get_operations())
    fn(args[0], shaped(args[1:]))
    return len(g.get_operations()) - start


CASES = {
    "hessians_64": lambda: hessians_case(64),
    "hessians_512": lambda: hessians_case(512),
    "jacobian_256": lambda: jacobian_case(None),
    "batch_jacobian_256": lambda: jacobian_case(16),
    "jvp_mlp": lambda: jvp_case("mlp"),
    "jvp_cnn": lambda: jvp_case("cnn"),
}


def print_table(rows):
  print("| case | counterpart | build ms ours / stock | build ratio | "
        "ops ours / stock | run ms ours / stock | run ratio | max diff |")
  print("|---|---|---|---|---|---|---|---|")
  for r in rows:
    ops = f"{r['ops_ours']} / {r['ops_stock']}"
    if r.get("needed_ours") is not None:
      ops += f" (needed {r['needed_ours']})"
    print(f"| {r['case']} | {r['counterpart']} | {r['build_ours_ms']:.1f} / "
          f"{r['build_stock_ms']:.1f} | {r['build_ratio']:.2f} | {ops} | "
          f"{r['run_ours_ms']:.2f} / {r['run_stock_ms']:.2f} | "
          f"{r['run_ratio']:.2f} | {r['max_diff']:.1e} |")


def main(argv):
  del argv
  tfgrad.uninstall()
  names = FLAGS.cases or list(CASES)
  unknown = set(names) - set(CASES)
  if unknown:
    raise app.UsageError(f"unknown cases: {sorted(unknown)}")
  rows = []
  for name in names:
    rows.append(CASES[name]())
    print(f"{name}: done", file=sys.stderr, flush=True)
  print_table(rows)


if __name__ == "__main__":
  app.run(main)
