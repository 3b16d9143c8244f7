"""tfgrad-compare and tfgrad-bench on the user's own models: a SavedModel, a
GraphDef (binary and text), Keras files saved both ways and a Python
function, each made here; their JSON and markdown reports read back; the
TensorBoard graph read back with TF's summary iterator; the bench plot;
and the one-line exit 2 for each kind of user mistake."""

import glob
import json
import os
import subprocess
import sys
import textwrap

from absl import flags
import numpy as np
import pytest
import tensorflow as tf

from tfgrad.cli import bench
from tfgrad.cli import compare

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_tool(module, argv):
  """Runs a tool in-process on its own FlagValues; returns the exit status."""
  fv = flags.FlagValues()
  module.define_flags(fv)
  defaults = ["--noprogress"] + (["--nowarmup"] if module is compare else [])
  fv(["tool"] + defaults + argv)
  return module.run(fv)


def compare_json(tmp_path, argv):
  out = tmp_path / "out.json"
  status = run_tool(compare, argv + [f"--json={out}"])
  return status, json.loads(out.read_text())


def parse_markdown_table(text):
  """The first markdown table in `text` as a list of dicts."""
  lines = [l for l in text.splitlines() if l.startswith("|")]
  header = [c.strip() for c in lines[0].strip("|").split("|")]
  assert set(lines[1].strip("|").split("|")) == {"---"}
  rows = []
  for line in lines[2:]:
    cells = [c.strip() for c in line.strip("|").split("|")]
    if len(cells) != len(header):
      break  # the next table
    rows.append(dict(zip(header, cells)))
  return rows


# ----- Models made here -----


class _Model(tf.Module):

  def __init__(self):
    super().__init__()
    self.kernel = tf.Variable(np.linspace(-1, 1, 6).reshape(3, 2)
                              .astype(np.float32), name="dense/kernel")
    self.bias = tf.Variable([0.1, -0.2], name="dense/bias")
    self.scale = tf.Variable([1.5, 0.5], trainable=False, name="scale")
    self.step = tf.Variable(0, name="step")

  @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
  def __call__(self, x):
    y = tf.tanh(x @ self.kernel + self.bias) * self.scale
    return {"y": y, "total": tf.reduce_sum(y), "x_sum": tf.reduce_sum(x)}


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("sm") / "model")
  model = _Model()
  tf.saved_model.save(model, directory,
                      signatures=model.__call__.get_concrete_function())
  return directory


def _graph_def():
  g = tf.Graph()
  with g.as_default():
    x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
    w = tf.compat.v1.placeholder(tf.float32, [3, 2], name="w")
    ids = tf.compat.v1.placeholder(tf.int32, [None], name="ids")
    h = tf.sin(x @ w)
    picked = tf.gather(h, tf.minimum(ids, 0))
    tf.reduce_sum(picked * picked, name="loss")
    tf.identity(h, name="hidden")
  return g.as_graph_def()


@pytest.fixture(scope="module")
def graphdefs(tmp_path_factory):
  folder = tmp_path_factory.mktemp("gd")
  binary, text = folder / "g.pb", folder / "g.pbtxt"
  tf.io.write_graph(_graph_def(), str(folder), "g.pb", as_text=False)
  tf.io.write_graph(_graph_def(), str(folder), "g.pbtxt", as_text=True)
  return str(binary), str(text)


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
  os.environ.setdefault("KERAS_BACKEND", "tensorflow")
  import keras  # pylint: disable=g-import-not-at-top
  folder = tmp_path_factory.mktemp("keras")
  model = keras.Sequential([keras.Input((4,)),
                            keras.layers.Dense(5, activation="tanh"),
                            keras.layers.Dense(3, activation="softmax")])
  model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd")
  paths = [str(folder / "m.keras"), str(folder / "m.h5")]
  for path in paths:
    model.save(path)
  return paths


_FN_MODULE = textwrap.dedent('''
    import numpy as np
    import tensorflow as tf

    def build():
      x = tf.compat.v1.placeholder(tf.float32, [2, 3], name="x")
      w = tf.Variable(np.ones([3, 3], np.float32), name="w")
      u = tf.Variable(np.ones([3], np.float32), name="u")
      s = tf.Variable(2.0, name="s")
      r = tf.Variable([0.3], name="r")
      c = tf.Variable(1.7, name="c")
      far = tf.Variable(1.0, name="far")
      loss = (tf.reduce_sum(tf.tanh(x @ w)) + tf.reduce_sum(tf.stop_gradient(u))
              + tf.cast(tf.cast(c, tf.int32), tf.float32)
              + tf.reduce_sum(tf.round(r)) + s * 0.5)
      return [loss], [w, u, c, r, s, far], {x: np.ones([2, 3], np.float32)}

    def not_a_pair():
      return 3
''')


@pytest.fixture(scope="module")
def fn_module(tmp_path_factory):
  folder = tmp_path_factory.mktemp("fn")
  (folder / "user_model_fn.py").write_text(_FN_MODULE)
  sys.path.insert(0, str(folder))
  yield "user_model_fn"
  sys.path.remove(str(folder))


# ----- Each source -----


def test_saved_model_trainable_float_variables(tmp_path, saved_model):
  status, result = compare_json(tmp_path, [f"--saved_model={saved_model}",
                                           "--loss=mean_square"])
  assert status == 0, result["verdict"]
  names = sorted(r["name"] for r in result["rows"])
  assert names == ["dense/bias", "dense/kernel"]  # not scale (frozen), step
  assert all(r["pattern"] == "both set" and r["check"] == "ok"
             for r in result["rows"])
  assert result["source"] == "saved_model"


def test_saved_model_ys_by_output_name_and_xs_glob(tmp_path, saved_model):
  status, result = compare_json(tmp_path, [
      f"--saved_model={saved_model}", "--ys=total", "--xs=dense/k*,scale"])
  assert status == 0
  assert [r["name"] for r in result["rows"]] == ["dense/kernel", "scale"]


@pytest.mark.parametrize("which", [0, 1], ids=["binary", "text"])
def test_graphdef_with_placeholders(tmp_path, graphdefs, which):
  status, result = compare_json(tmp_path, [
      f"--graphdef={graphdefs[which]}", "--ys=loss:0", "--xs=x:0,w"])
  assert status == 0, result["verdict"]
  assert [r["name"] for r in result["rows"]] == ["x:0", "w:0"]
  assert {r["shape"] for r in result["rows"]} == {"[None, 3]", "[3, 2]"}


def test_graphdef_feed_from_npz(tmp_path, graphdefs):
  npz = tmp_path / "feed.npz"
  np.savez(npz, x=np.ones([2, 3], np.float32),
           w=np.full([3, 2], 0.5, np.float32), ids=np.zeros([2], np.int32))
  status, result = compare_json(tmp_path, [
      f"--graphdef={graphdefs[0]}", "--ys=hidden:0", "--loss=sum",
      f"--feed={npz}"])
  assert status == 0
  assert [r["name"] for r in result["rows"]] == ["x", "w"]  # default: floats


@pytest.mark.parametrize("which", [0, 1], ids=["keras", "h5"])
def test_keras_files_saved_both_ways(tmp_path, keras_files, which):
  status, result = compare_json(tmp_path, [f"--keras={keras_files[which]}",
                                           "--batch=6"])
  assert status == 0, result["verdict"]
  assert len(result["rows"]) == 4  # two kernels, two biases
  assert "sparse_xent" in result["model"]
  assert all(r["pattern"] == "both set" for r in result["rows"])


def test_python_function_with_feed(tmp_path, fn_module):
  status, result = compare_json(tmp_path, [f"--fn={fn_module}:build"])
  assert status == 0
  patterns = {r["name"]: r["pattern"] for r in result["rows"]}
  assert patterns == {"w:0": "both set", "u:0": "both None",
                      "c:0": "both None", "r:0": "both None",
                      "s:0": "both set", "far:0": "both None"}


# ----- --explain -----


def test_explain_gives_a_reason_per_none_gradient(tmp_path, fn_module):
  status, result = compare_json(tmp_path, [f"--fn={fn_module}:build",
                                           "--explain"])
  assert status == 0
  reasons = {e["x"]: e["reason"] for e in result["explanations"]}
  assert reasons == {"u:0": "stopped", "c:0": "integer",
                     "r:0": "not_differentiable", "far:0": "no_path"}
  blocker = next(e for e in result["explanations"]
                 if e["x"] == "r:0")["blockers"][0]
  assert blocker["op_type"] == "Round"
  assert blocker["path"][0] == "r" and blocker["path"][-1].startswith("add")


def test_explain_covers_zeros_under_unconnected_zero(tmp_path, fn_module):
  status, result = compare_json(tmp_path, [
      f"--fn={fn_module}:build", "--explain", "--unconnected_gradients=zero"])
  assert status == 0
  assert {e["x"] for e in result["explanations"]} == {"u:0", "c:0", "r:0",
                                                      "far:0"}


# ----- Reports -----


def test_markdown_table_parses_back(tmp_path, saved_model):
  md, js = tmp_path / "out.md", tmp_path / "out.json"
  assert run_tool(compare, [f"--saved_model={saved_model}", "--loss=sum",
                            f"--markdown={md}", f"--json={js}"]) == 0
  rows = parse_markdown_table(md.read_text())
  result = json.loads(js.read_text())
  assert [r["x"] for r in rows] == [r["name"] for r in result["rows"]]
  assert [r["check"] for r in rows] == ["ok"] * len(rows)
  assert "**all 2 gradients match**" in md.read_text()


def test_tensorboard_graph_reads_back(tmp_path):
  logdir, js = tmp_path / "tb", tmp_path / "out.json"
  assert run_tool(compare, ["--model=mlp", "--depth=2", f"--json={js}",
                            f"--tensorboard={logdir}"]) == 0
  result = json.loads(js.read_text())
  (event_file,) = glob.glob(str(logdir / "events.out.tfevents.*"))
  graph_def = None
  for event in tf.compat.v1.train.summary_iterator(event_file):
    if event.HasField("graph_def"):
      graph_def = tf.compat.v1.GraphDef.FromString(event.graph_def)
  assert graph_def is not None
  scopes = {n.name.split("/")[0] for n in graph_def.node}
  assert {"tfgrad_gradients", "stock_gradients"} <= scopes
  for engine, scope in (("tfgrad", "tfgrad_gradients"),
                        ("stock", "stock_gradients")):
    added = [n for n in graph_def.node if n.name.startswith(scope + "/")]
    dead = [n for n in added if n.attr["_dead"].b]
    assert len(added) <= result["engines"][engine]["ops"]
    assert len(dead) == result["engines"][engine]["dead_ops"]
  assert result["engines"]["stock"]["dead_ops"] > 0


def test_bench_on_a_saved_model_with_reports(tmp_path, saved_model):
  md, js = tmp_path / "b.md", tmp_path / "b.json"
  assert run_tool(bench, [f"--saved_model={saved_model}", "--loss=sum",
                          "--repeats=2", "--run_repeats=2",
                          f"--markdown={md}", f"--json={js}"]) == 0
  report = json.loads(js.read_text())
  (row,) = report["models"]
  assert row["model"] == "saved_model" and row["ops_tfgrad"] > 0
  assert row["run_count_tfgrad"] == 4
  (md_row,) = parse_markdown_table(md.read_text())
  assert md_row["model"] == "saved_model"
  assert md_row["ops tfgrad"] == f"{row['ops_tfgrad']:.0f}"
  assert md_row["ops ratio"] == f"{row['ops_ratio']:.2f}"


def test_bench_plot_png(tmp_path):
  pytest.importorskip("matplotlib")
  png, js = tmp_path / "b.png", tmp_path / "b.json"
  assert run_tool(bench, ["--models=mlp_10,mlp_100,fanout_100",
                          "--repeats=1", "--run_repeats=1",
                          f"--plot={png}", f"--json={js}"]) == 0
  data = png.read_bytes()
  assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10000
  fits = json.loads(js.read_text())["fits"]
  assert all(fits[f"ops_{e}"] is not None for e in ("tfgrad", "stock"))


def test_fit_exponent_recovers_a_power_law():
  sizes = [10, 100, 1000]
  assert bench.fit_exponent(sizes, [3 * s ** 1.5 for s in sizes]) == \
      pytest.approx(1.5)
  assert bench.fit_exponent([10], [1.0]) is None


def test_checkpoints_reports_what_is_kept_and_gradients_match(tmp_path):
  status, result = compare_json(tmp_path, ["--model=mlp", "--depth=12",
                                           "--checkpoints=memory"])
  assert status == 0, result["verdict"]
  found = result["checkpoints"]
  assert found["applies"] and found["kept"]
  assert found["segments"] and all(ops for _, ops in found["segments"])
  assert found["estimated_peak_plain"] > 0
  assert found["text"].startswith(f"kept {len(found['kept'])} tensors")
  markdown = (tmp_path / "out.md")
  run_tool(compare, ["--model=mlp", "--depth=12", "--checkpoints=speed",
                     f"--markdown={markdown}"])
  assert "Checkpoints:" in markdown.read_text()


def test_checkpoints_budget_flag_takes_byte_suffixes():
  assert compare.checkpoints_value("200MiB").bytes == 200 * 2 ** 20
  assert compare.checkpoints_value("1.5G").bytes == 1_500_000_000
  assert compare.checkpoints_value("64kB").bytes == 64_000
  assert compare.checkpoints_value("4096").bytes == 4096
  assert compare.checkpoints_value("memory") == "memory"
  assert compare.checkpoints_value(None) is None


# ----- Bad input: exit 2, one line, the names that exist -----


def _error(capsys, module, argv):
  status = run_tool(module, argv)
  err = capsys.readouterr().err.strip().splitlines()
  assert status == 2
  assert len(err) == 1, err
  return err[0]


def test_bad_checkpoints_values(capsys):
  line = _error(capsys, compare, ["--model=mlp", "--checkpoints=fast"])
  assert "--checkpoints=fast" in line and "memory, speed" in line
  line = _error(capsys, compare, ["--model=mlp", "--checkpoints=10"])
  assert "smallest feasible" in line


def test_missing_files(capsys, tmp_path):
  for flag in ("saved_model", "graphdef", "keras"):
    line = _error(capsys, compare, [f"--{flag}={tmp_path}/nope"])
    assert "nope" in line and "no " in line


def test_wrong_signature_lists_the_real_ones(capsys, saved_model):
  line = _error(capsys, compare, [f"--saved_model={saved_model}",
                                  "--signature=serving"])
  assert "serving_default" in line


def test_unknown_output_close_matches_first(capsys, graphdefs):
  line = _error(capsys, compare, [f"--graphdef={graphdefs[0]}",
                                  "--ys=los:0"])
  assert line.split("; ")[1].startswith("ys: loss:0")


def test_non_scalar_y_needs_loss(capsys, graphdefs, saved_model):
  line = _error(capsys, compare, [f"--graphdef={graphdefs[0]}",
                                  "--ys=hidden:0"])
  assert "not a scalar" in line and "--loss" in line
  line = _error(capsys, bench, [f"--saved_model={saved_model}", "--ys=y"])
  assert "not a scalar" in line


def test_xs_must_be_float(capsys, graphdefs, saved_model):
  line = _error(capsys, compare, [f"--graphdef={graphdefs[0]}",
                                  "--ys=loss:0", "--xs=ids:0"])
  assert "ids:0 (int32)" in line
  line = _error(capsys, compare, [f"--saved_model={saved_model}",
                                  "--xs=step"])
  assert "step (int32)" in line


def test_unknown_x_and_function(capsys, saved_model, fn_module):
  line = _error(capsys, compare, [f"--saved_model={saved_model}",
                                  "--xs=dense/kernal"])
  assert line.split("; ")[1].startswith("xs: dense/kernel")
  line = _error(capsys, compare, [f"--fn={fn_module}:buid"])
  assert "build" in line
  line = _error(capsys, compare, [f"--fn={fn_module}:not_a_pair"])
  assert "(ys, xs)" in line
  line = _error(capsys, compare, ["--fn=no_such_module_here:f"])
  assert "no_such_module_here" in line


def test_two_sources_are_refused(capsys, saved_model, graphdefs):
  line = _error(capsys, compare, [f"--saved_model={saved_model}",
                                  f"--graphdef={graphdefs[0]}"])
  assert "--saved_model" in line and "--graphdef" in line
  line = _error(capsys, compare, [f"--saved_model={saved_model}",
                                  "--model=mlp"])
  assert "--model" in line


def test_command_line_error_has_no_traceback(tmp_path):
  out = subprocess.run(
      [sys.executable, os.path.join(_ROOT, "tools", "compare.py"),
       f"--graphdef={tmp_path}/missing.pb", "--ys=a:0"],
      capture_output=True, text=True, check=False)
  assert out.returncode == 2
  assert "Traceback" not in out.stderr
  errors = [l for l in out.stderr.splitlines() if "error:" in l]
  assert errors == [f"tfgrad-compare: error: --graphdef: no file "
                    f"'{tmp_path}/missing.pb'"]
