r"""Benchmarks memory-saving gradients (`checkpoints=`) against plain
tfgrad and stock tf.gradients, in one run.

    python tools/remat_bench.py                     # the three models
    python tools/remat_bench.py --quick --scaling --plot=/tmp/depth.svg

For each model, the training-step gradient is built in a fresh graph by
each engine (stock, plain tfgrad, "memory", "speed", and
MemoryBudget(f x the measured plain peak) for each --budgets fraction
f), then all graphs are run in turn, --runs times after a warm-up, each
in its own Session under TF's BFC CPU allocator, reset before every run.
Reported, per engine: build time (thread CPU) of the measured graph and,
as "x plain", the median of --build_reps paired ratios (plain and the
engine built back to back in fresh graphs), ops added, the medians of
run time, of the peak above the bytes in use before the run
(`transient`: activations and gradients, without the variables) and of
`peak` = transient + the graph's own variables (what the Session alone
would need: other engines' Sessions keep their variables in the same
allocator), and their ratios against plain tfgrad (run time:
median of paired ratios of back-to-back runs). --scaling measures plain
and "memory" peaks of MLPs from depth 25 to 400 and fits the exponent of
depth (log-log least squares), drawn as an SVG plot by --plot.
"""

import gc
import json
import math
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
import tensorflow as tf

import tfgrad
from tfgrad import remat_select
from tools import models

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["mlp", "resnet", "transformer", "rnn"],
                  "Models: mlp (100 x 1024), resnet (50 blocks), "
                  "transformer (16 blocks), rnn (a tf.while_loop of 1000 "
                  "tanh steps).")
flags.DEFINE_bool("quick", False, "Smaller models.")
flags.DEFINE_integer("runs", 5, "Timed Session runs per engine.")
flags.DEFINE_list("budgets", ["0.5", "0.3"],
                  "MemoryBudget fractions of the measured plain peak "
                  "(transient bytes plus the model's variables).")
flags.DEFINE_integer("build_reps", 5,
                     "Back-to-back (plain, engine) builds per engine for "
                     "the build-time ratio: the median of their ratios.")
flags.DEFINE_bool("scaling", False, "Measure peak against MLP depth.")
flags.DEFINE_string("plot", None, "Write the depth-scaling plot (SVG).")
flags.DEFINE_string("json", None, "Write the results to this path.")

_SIZES = {
    "mlp": (dict(depth=100, width=1024, batch=128),
            dict(depth=30, width=256, batch=64)),
    "resnet": (dict(blocks=50, batch=16, size=16, channels=32),
               dict(blocks=12, batch=8, size=8, channels=16)),
    "transformer": (dict(blocks=16, batch=8, seq=128, d_model=128, heads=4),
                    dict(blocks=4, batch=4, seq=64, d_model=64, heads=4)),
    "rnn": (dict(steps=1000, batch=64, inputs=32, hidden=256),
            dict(steps=100, batch=16, inputs=8, hidden=64)),
}


def _rnn(steps, batch, inputs, hidden):
  """A v2 `tf.while_loop` RNN: h <- tanh(x_t Wx + h Wh + b) for `steps`
  steps (a trip count the graph only knows when it runs), loss the sum of
  the squared last state; ys and the weights."""
  init = tf.compat.v1.glorot_uniform_initializer(seed=1)
  wx = tf.compat.v1.get_variable("wx", [inputs, hidden], initializer=init,
                                 use_resource=True)
  wh = tf.compat.v1.get_variable("wh", [hidden, hidden], initializer=init,
                                 use_resource=True)
  b = tf.compat.v1.get_variable("b", [hidden], use_resource=True,
                                initializer=tf.compat.v1.zeros_initializer())
  seq = tf.random.stateless_normal([steps, batch, inputs], seed=[1, 2])
  n = tf.compat.v1.placeholder_with_default(steps, [])

  def body(t, h):
    x = tf.gather(seq, t)
    return t + 1, tf.tanh(tf.matmul(x, wx) + tf.matmul(h, wh) + b)

  _, h = tf.while_loop(lambda t, h: t < n, body,
                       [tf.constant(0), tf.zeros([batch, hidden])])
  return [tf.reduce_sum(tf.square(h))], [wx, wh, b]


def _model(model, sizes):
  if model == "rnn":
    return _rnn(**sizes)
  return models.build(model, **sizes)


def _build(model, engine, sizes):
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = _model(model, sizes)
    before = len(graph.get_operations())
    gc.collect()
    start = time.thread_time()
    if engine == "stock":
      grads = tf.gradients(ys, xs)
    elif engine == "plain":
      grads = tfgrad.gradients(ys, xs)
    else:
      grads = tfgrad.gradients(ys, xs, checkpoints=engine)
    build_s = time.thread_time() - start
    estimate = None
    if engine != "stock":
      explained = tfgrad.explain_checkpoints(
          ys, xs, checkpoints="memory" if engine == "plain" else engine)
      estimate = explained["estimated_peak_plain" if engine == "plain"
                           else "estimated_peak"]
    fetches = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices)
               else g for g in grads if g is not None]
    result_bytes = sum(remat_select.nbytes(f) for f in fetches)
    var_bytes = sum(remat_select.nbytes(v)
                    for v in tf.compat.v1.global_variables())
    init = tf.compat.v1.global_variables_initializer()
  sess = tf.compat.v1.Session(graph=graph)
  sess.run(init)
  sess.run(fetches)
  return dict(sess=sess, fetches=fetches, build_ms=1e3 * build_s,
              ops=len(graph.get_operations()) - before, estimate=estimate,
              result_bytes=result_bytes, var_bytes=var_bytes)


def _build_seconds(model, engine, sizes):
  """Thread CPU time of one gradient call in a fresh graph (nothing run)."""
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = _model(model, sizes)
    gc.collect()  # earlier graphs' garbage is not charged to this build
    start = time.thread_time()
    if engine == "plain":
      tfgrad.gradients(ys, xs)
    elif engine == "stock":
      tf.gradients(ys, xs)
    else:
      tfgrad.gradients(ys, xs, checkpoints=engine)
    return time.thread_time() - start


def _paired_build_ratio(model, engine, sizes, reps):
  """Median of engine / plain build times, each pair built back to back
  (the machine's load changes less within a pair than across a run)."""
  ratios = []
  for _ in range(reps):
    plain = _build_seconds(model, "plain", sizes)
    ratios.append(_build_seconds(model, engine, sizes) / plain)
  return statistics.median(ratios)


def _measure(built, runs):
  """Interleaved runs of every engine; per engine lists of run_s, peak,
  transient."""
  stats = {e: dict(run_s=[], peak=[], transient=[]) for e in built}
  for _ in range(runs):
    for engine, b in built.items():
      tf.config.experimental.reset_memory_stats("CPU:0")
      base = tf.config.experimental.get_memory_info("CPU:0")["current"]
      start = time.perf_counter()
      b["sess"].run(b["fetches"])
      stats[engine]["run_s"].append(time.perf_counter() - start)
      peak = tf.config.experimental.get_memory_info("CPU:0")["peak"]
      # The Session's own peak: its transient bytes plus its variables
      # (other engines' Sessions hold theirs in the same allocator).
      stats[engine]["peak"].append(peak - base + b["var_bytes"])
      stats[engine]["transient"].append(peak - base)
  return stats


def _close(built):
  for b in built.values():
    b["sess"].close()
  built.clear()


def bench_model(model, sizes):
  built = {e: _build(model, e, sizes) for e in ("stock", "plain", "memory",
                                                 "speed")}
  stats = _measure(built, FLAGS.runs)
  plain_peak = statistics.median(stats["plain"]["peak"])
  plain_transient = statistics.median(stats["plain"]["transient"])
  fixed = plain_peak - plain_transient  # the model's variables
  info_results = built["plain"]["result_bytes"]
  info = {e: dict(build_ms=b["build_ms"], ops=b["ops"],
                  estimate=b["estimate"]) for e, b in built.items()}
  for e in ("stock", "memory", "speed"):
    info[e]["build_paired"] = _paired_build_ratio(model, e, sizes,
                                                  FLAGS.build_reps)
  _close(built)
  for frac in FLAGS.budgets:
    budget = int(float(frac) * plain_peak)
    name = f"budget_{frac}"
    try:
      built[name] = _build(model, tfgrad.MemoryBudget(budget), sizes)
      info[name] = dict(build_ms=built[name]["build_ms"],
                        ops=built[name]["ops"], budget=budget,
                        estimate=built[name]["estimate"],
                        build_paired=_paired_build_ratio(
                            model, tfgrad.MemoryBudget(budget), sizes,
                            FLAGS.build_reps))
    except ValueError as e:
      info[name] = dict(error=str(e), budget=budget)
  if built:
    built["plain"] = _build(model, "plain", sizes)
    more = _measure(built, FLAGS.runs)
    for e, s in more.items():
      if e != "plain":
        stats[e] = s
      else:
        stats["plain_again"] = s
    _close(built)
  rows = {}
  plain = stats["plain"]
  for e, s in stats.items():
    if e == "plain_again":
      continue
    ref = stats["plain_again"] if e.startswith("budget") else plain
    row = dict(info.get(e, {}))
    row.update(run_ms=1e3 * statistics.median(s["run_s"]),
               peak=statistics.median(s["peak"]),
               transient=statistics.median(s["transient"]),
               run_ratio=statistics.median(a / b for a, b in zip(
                   s["run_s"], ref["run_s"])),
               build_ratio=row.get("build_paired", 1.0 if e == "plain"
                                   else row.get("build_ms", 0)
                                   / info["plain"]["build_ms"]))
    row["peak_ratio"] = row["peak"] / statistics.median(ref["peak"])
    row["transient_ratio"] = row["transient"] / statistics.median(
        ref["transient"])
    rows[e] = row
  for frac in FLAGS.budgets:
    name = f"budget_{frac}"
    if name in rows:
      rows[name]["peak_over_budget"] = rows[name]["peak"] / info[name][
          "budget"]
    elif name in info:
      rows[name] = info[name]
  rows["_fixed_bytes"] = fixed
  rows["_result_bytes"] = info_results
  return rows


def _fit(depths, values):
  xs = [math.log(d) for d in depths]
  ys = [math.log(v) for v in values]
  mx, my = statistics.mean(xs), statistics.mean(ys)
  return (sum((x - mx) * (y - my) for x, y in zip(xs, ys))
          / sum((x - mx) ** 2 for x in xs))


def scaling():
  depths = [25, 50, 100, 200, 400]
  result = {"depths": depths, "plain": [], "memory": []}
  for depth in depths:
    sizes = dict(depth=depth, width=64, batch=2048)
    built = {e: _build("mlp", e, sizes) for e in ("plain", "memory")}
    stats = _measure(built, 3)
    _close(built)
    for e in ("plain", "memory"):
      result[e].append(statistics.median(stats[e]["transient"]))
  result["exponent_plain"] = _fit(depths, result["plain"])
  result["exponent_memory"] = _fit(depths, result["memory"])
  return result


def write_svg(path, result):
  """A log-log plot of transient peak bytes against depth."""
  w, h, pad = 480, 320, 50
  depths = result["depths"]
  values = result["plain"] + result["memory"]
  lx = lambda d: pad + (w - 2 * pad) * (math.log(d) - math.log(depths[0])) / (  # noqa: E731
      math.log(depths[-1]) - math.log(depths[0]))
  lo, hi = math.log(min(values)), math.log(max(values))
  ly = lambda v: h - pad - (h - 2 * pad) * (math.log(v) - lo) / (hi - lo)  # noqa: E731
  parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" '
           f'height="{h}"><rect width="100%" height="100%" fill="white"/>',
           f'<text x="{pad}" y="20" font-size="13">Transient peak bytes '
           'vs MLP depth (log-log)</text>']
  for key, color in (("plain", "red"), ("memory", "blue")):
    pts = " ".join(f"{lx(d):.1f},{ly(v):.1f}"
                   for d, v in zip(depths, result[key]))
    parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" '
                 'stroke-width="2"/>')
    last = result[key][-1]
    parts.append(f'<text x="{w - pad - 150}" y="{ly(last) - 6:.1f}" '
                 f'font-size="12" fill="{color}">{key}: depth^'
                 f'{result["exponent_" + key]:.2f}</text>')
  for d in depths:
    parts.append(f'<text x="{lx(d) - 8:.1f}" y="{h - pad + 18}" '
                 f'font-size="11">{d}</text>')
  parts.append("</svg>")
  with open(path, "w") as f:
    f.write("\n".join(parts))


def main(argv):
  del argv
  results = {}
  for model in FLAGS.models:
    sizes = _SIZES[model][1 if FLAGS.quick else 0]
    rows = bench_model(model, sizes)
    results[model] = rows
    print(f"\n{model} {sizes}  ("
          f"{rows['_fixed_bytes'] / 2**20:.1f} MiB of variables; the gradients fetched: "
          f"{rows['_result_bytes'] / 2**20:.1f} MiB, a floor of transient)")
    print(f"{'engine':<14}{'build ms':>9}{'x plain':>8}{'ops':>7}"
          f"{'run ms':>9}{'x plain':>8}{'peak MiB':>10}{'x plain':>8}"
          f"{'transient':>10}{'x plain':>8}")
    for e, r in rows.items():
      if e.startswith("_"):
        continue
      if "error" in r:
        print(f"{e:<14} {r['error']}")
        continue
      extra = (f"  peak/budget {r['peak_over_budget']:.2f}"
               if "peak_over_budget" in r else "")
      if r.get("estimate"):
        extra += f"  peak/estimate {r['peak'] / r['estimate']:.2f}"
      print(f"{e:<14}{r.get('build_ms', 0):9.1f}{r['build_ratio']:8.2f}"
            f"{r.get('ops', 0):7d}{r['run_ms']:9.1f}{r['run_ratio']:8.2f}"
            f"{r['peak'] / 2**20:10.1f}{r['peak_ratio']:8.2f}"
            f"{r['transient'] / 2**20:10.1f}{r['transient_ratio']:8.2f}"
            + extra)
  if FLAGS.scaling:
    result = scaling()
    results["scaling"] = result
    print(f"\ndepth scaling (transient peak): plain depth^"
          f"{result['exponent_plain']:.2f}, memory depth^"
          f"{result['exponent_memory']:.2f}")
    if FLAGS.plot:
      write_svg(FLAGS.plot, result)
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump(results, f, indent=1, default=str)


if __name__ == "__main__":
  app.run(main)
