"""Where compare and bench get their model: a built-in model, a SavedModel,
a GraphDef, a Keras file or a Python function.

`define_flags(fv)` adds the source flags to a FlagValues (the tools call it
from `main`); `builder(opts)` checks them and returns a `Builder`, whose
`build()` adds the model to the current default `tf.Graph` and returns a
`Built`: the ys, the xs, the feed dict for placeholders, the xs' display
names, and `init(sess)`, which puts the variables' values into a Session
of that graph. Every mistake the user can make raises `common.UserError`
with the names that do exist.
"""

import dataclasses
import fnmatch
import importlib
import os
import sys
import tempfile
from typing import Callable, Dict, List

from absl import flags
import numpy as np
import tensorflow as tf

from tfgrad.cli import models
from tfgrad.cli.common import UserError
from tfgrad.cli.common import names_hint
from tfgrad.cli.common import unknown

SOURCES = ("saved_model", "graphdef", "keras", "fn")


def define_flags(fv):
  """The source flags, shared by compare and bench."""
  flags.DEFINE_string("saved_model", None,
                      "SavedModel directory: differentiate a loss of one "
                      "signature's outputs.", flag_values=fv)
  flags.DEFINE_string("signature", "serving_default",
                      "--saved_model: the signature to load.", flag_values=fv)
  flags.DEFINE_string("graphdef", None,
                      "GraphDef file (.pb binary or .pbtxt text) with --ys "
                      "and --xs tensor names.", flag_values=fv)
  flags.DEFINE_string("keras", None,
                      "Keras model file (.keras or .h5): its loss on a "
                      "random batch, xs = its trainable weights.",
                      flag_values=fv)
  flags.DEFINE_string("fn", None,
                      "package.module:function building a graph and "
                      "returning (ys, xs) or (ys, xs, feed_dict).",
                      flag_values=fv)
  flags.DEFINE_list("ys", None,
                    "Output names (--saved_model) or tensor names "
                    "(name:0) to differentiate.", flag_values=fv)
  flags.DEFINE_list("xs", None,
                    "Variable or tensor names to differentiate against "
                    "(globs allowed; default: the trainable variables, or "
                    "for --graphdef the float placeholders).", flag_values=fv)
  flags.DEFINE_enum("loss", None, ["sum", "mean_square"],
                    "Scalar loss made of the ys (required for non-scalar "
                    "ys; default for --saved_model without --ys: sum).",
                    flag_values=fv)
  flags.DEFINE_string("feed", "random",
                      "Placeholder values: random, zeros, or a .npz file "
                      "keyed by placeholder or input name.", flag_values=fv)
  for name, default, help_ in (
      ("batch", None, "Batch size (unknown batch dimensions of a model's "
                      "inputs: 4 when not given)."),
      ("seed", 0, "numpy seed for parameters and data.")):
    if name not in fv:
      flags.DEFINE_integer(name, default, help_, flag_values=fv)


def chosen(opts):
  """The source flag given (None: a built-in --model); UserError if several."""
  given = [s for s in SOURCES if getattr(opts, s, None)]
  if len(given) > 1:
    raise UserError("give one model source, not " +
                    " and ".join(f"--{s}" for s in given))
  return given[0] if given else None


@dataclasses.dataclass
class Built:
  ys: List[tf.Tensor]
  xs: list
  feed: Dict
  names: List[str]
  init: Callable


@dataclasses.dataclass
class Builder:
  description: str
  build: Callable[[], Built]
  keep: object = None  # what must stay alive while building (a temp dir)


def builder(opts, builtin=None):
  """The Builder the flags ask for; `builtin()` builds the --model."""
  source = chosen(opts)
  if source is None:
    return Builder("built-in model", lambda: _builtin(builtin))
  return {"saved_model": _saved_model_builder, "graphdef": _graphdef_builder,
          "keras": _keras_builder, "fn": _fn_builder}[source](opts)


def _builtin(build):
  ys, xs = build()
  return Built(ys, xs, {}, [x.name for x in xs], _initialize_globals)


def _initialize_globals(sess):
  with sess.graph.as_default():
    sess.run(tf.compat.v1.global_variables_initializer())


# ----- Names -----


def _tensor_by_name(graph, name, kind="tensor"):
  if ":" not in name:
    name += ":0"
  try:
    return graph.get_tensor_by_name(name)
  except (KeyError, ValueError):
    names = [t.name for op in graph.get_operations() for t in op.outputs]
    raise unknown(kind, name, names) from None


def _ancestors(tensors):
  seen, stack = set(), [t.op for t in tensors]
  while stack:
    op = stack.pop()
    if op not in seen:
      seen.add(op)
      stack.extend(t.op for t in op.inputs)
      stack.extend(op.control_inputs)
  return seen


def _is_float(dtype):
  return tf.as_dtype(dtype).is_floating or tf.as_dtype(dtype).is_complex


def _check_float(xs, names):
  bad = []
  for x, name in zip(xs, names):
    dtype = x.op.get_attr("dtype") if x.dtype == tf.resource else x.dtype
    if not _is_float(dtype):
      bad.append(f"{name} ({tf.as_dtype(dtype).name})")
  if bad:
    raise UserError("xs must be floating or complex, not: " + ", ".join(bad))


def _select_xs(graph, patterns, variables, default):
  """xs named by --xs globs (variable names, op or tensor names), or
  `default`. `variables` maps variable name -> handle tensor."""
  if not patterns:
    return default
  tensors = {t.name: t for op in graph.get_operations() for t in op.outputs}
  chosen_ = {}
  for pattern in patterns:
    matches = {n: v for n, v in variables.items()
               if fnmatch.fnmatchcase(n, pattern)}
    if not matches:
      key = pattern if ":" in pattern or any(c in pattern for c in "*?[") \
          else pattern + ":0"
      matches = {n: t for n, t in tensors.items()
                 if fnmatch.fnmatchcase(n, key)}
    if not matches:
      raise unknown("x", pattern, list(variables) or list(tensors))
    chosen_.update(matches)
  return list(chosen_.items())


def _loss(ys, names, loss):
  """ys as given (each scalar) or one scalar `loss` of them."""
  if loss is None:
    for y, name in zip(ys, names):
      if y.shape.rank != 0:
        raise UserError(f"y {name!r} has shape {y.shape}, not a scalar: "
                        "pass --loss=sum or --loss=mean_square")
    return ys
  terms = []
  for y in ys:
    y = tf.cast(y, tf.float32) if not _is_float(y.dtype) else y
    terms.append(tf.reduce_sum(y) if loss == "sum"
                 else tf.reduce_mean(tf.square(tf.abs(y))))
  return [tf.add_n(terms, name="loss") if len(terms) > 1
          else tf.identity(terms[0], name="loss")]


# ----- Feeds -----


def _feeds(opts, placeholders):
  """Values for `placeholders` ({display name: tensor}) from --feed."""
  rng = np.random.RandomState(opts.seed)
  batch = opts.batch or 4
  stored = None
  if opts.feed not in ("random", "zeros"):
    if not os.path.isfile(opts.feed):
      raise UserError(f"--feed: no file {opts.feed!r} (random, zeros or a "
                      ".npz file)")
    try:
      stored = dict(np.load(opts.feed))
    except (OSError, ValueError) as e:
      raise UserError(f"--feed: cannot read {opts.feed!r} as .npz: {e}") \
          from None
  feed = {}
  for name, t in placeholders.items():
    if stored is not None:
      keys = [name, t.op.name, t.name]
      found = [k for k in keys if k in stored]
      if not found:
        raise unknown("--feed entry for", name, stored)
      feed[t] = stored[found[0]]
      continue
    shape = [batch if d is None else d for d in t.shape.as_list()] \
        if t.shape.rank is not None else [batch]
    dtype = t.dtype
    if opts.feed == "zeros":
      value = np.zeros(shape, dtype.as_numpy_dtype)
    elif dtype.is_floating or dtype.is_complex:
      value = rng.standard_normal(shape).astype(dtype.as_numpy_dtype)
    elif dtype.is_integer:
      value = rng.randint(0, 2, size=shape).astype(dtype.as_numpy_dtype)
    elif dtype == tf.bool:
      value = rng.rand(*shape) < 0.5
    else:
      raise UserError(f"cannot make values for input {name!r} of dtype "
                      f"{dtype.name}: pass --feed=FILE.npz")
    feed[t] = value
  return feed


# ----- SavedModel -----


def _read_saved_model(directory):
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
  path = os.path.join(directory, "saved_model.pb")
  if not os.path.isdir(directory):
    raise UserError(f"--saved_model: no directory {directory!r}")
  if not os.path.isfile(path):
    raise UserError(f"--saved_model: {directory!r} has no saved_model.pb")
  proto = saved_model_pb2.SavedModel()
  with open(path, "rb") as f:
    proto.ParseFromString(f.read())
  graphs = [m for m in proto.meta_graphs
            if "serve" in m.meta_info_def.tags] or list(proto.meta_graphs)
  if not graphs:
    raise UserError(f"--saved_model: {directory!r} holds no graph")
  return graphs[0]


def _saved_model_builder(opts, model_loss=None, label=None):
  directory = opts.saved_model if label is None else label[1]
  meta = _read_saved_model(directory)
  signatures = {k: v for k, v in meta.signature_def.items()
                if not k.startswith("__")}
  if opts.signature not in signatures:
    raise unknown("signature", opts.signature, signatures)
  signature = signatures[opts.signature]
  trainable = {}
  for node in meta.object_graph_def.nodes:
    if node.WhichOneof("kind") == "variable":
      trainable[node.variable.name] = node.variable.trainable
  init_op = meta.signature_def.get("__saved_model_init_op")
  variables_path = os.path.join(directory, "variables", "variables")

  def build():
    graph = tf.compat.v1.get_default_graph()
    saver = tf.compat.v1.train.import_meta_graph(meta, clear_devices=True)
    outputs = dict(signature.outputs)
    if opts.ys:
      ys, names = [], []
      for name in opts.ys:
        if name in outputs:
          ys.append(graph.get_tensor_by_name(outputs[name].name))
        else:
          ys.append(_tensor_by_name(graph, name, "output"))  # noqa
        names.append(name)
    else:
      names = sorted(k for k, v in outputs.items()
                     if _is_float(tf.as_dtype(v.dtype)))
      if not names:
        raise UserError(f"signature {opts.signature!r} has no float output; "
                        f"outputs: {names_hint('', outputs)}")
      ys = [graph.get_tensor_by_name(outputs[n].name) for n in names]
    loss = opts.loss or (None if opts.ys else "sum")
    if model_loss is not None and not opts.ys and not opts.loss:
      ys = [model_loss(ys, names, opts)]
    else:
      ys = _loss(ys, names, loss)
    ancestors = _ancestors(ys)
    handles = {op.name: op.outputs[0] for op in graph.get_operations()
               if op.type == "VarHandleOp"}
    default = [(n, h) for n, h in handles.items()
               if h.op in ancestors and trainable.get(_shared_name(h.op), True)
               and _is_float(h.op.get_attr("dtype"))]
    xs = _select_xs(graph, opts.xs, handles, default)
    if not xs:
      raise UserError("no trainable float variable reaches the ys; name "
                      "xs with --xs")
    names_, xs = [n for n, _ in xs], [x for _, x in xs]
    _check_float(xs, names_)
    inputs = {k: graph.get_tensor_by_name(v.name)
              for k, v in signature.inputs.items()}
    feed = _feeds(opts, inputs)

    def init(sess):
      with sess.graph.as_default():
        if saver is not None:
          saver.restore(sess, variables_path)
        if init_op is not None:
          sess.run(graph.get_operation_by_name(
              init_op.outputs["__saved_model_init_op"].name.split(":")[0]))
    return Built(ys, xs, feed, names_, init)

  what = label[0] if label else f"SavedModel {directory}"
  return Builder(f"{what} [{opts.signature}]", build)


def _shared_name(op):
  value = op.get_attr("shared_name")
  return value.decode() if isinstance(value, bytes) else value


# ----- GraphDef -----


def _read_graphdef(path):
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    raise UserError(f"--graphdef: no file {path!r}")
  with open(path, "rb") as f:
    data = f.read()
  graph_def = tf.compat.v1.GraphDef()
  try:
    graph_def.ParseFromString(data)
    if graph_def.node or not data:
      return graph_def
  except Exception:  # pylint: disable=broad-except
    pass
  try:
    return text_format.Parse(data.decode("utf-8"), tf.compat.v1.GraphDef())
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f"--graphdef: {path!r} is neither a binary nor a text "
                    f"GraphDef ({str(e).splitlines()[0][:120]})") from None


def _graphdef_builder(opts):
  graph_def = _read_graphdef(opts.graphdef)
  if not opts.ys:
    raise UserError("--graphdef needs --ys=name:0,...; nodes: " +
                    names_hint("", [n.name for n in graph_def.node]))

  def build():
    graph = tf.compat.v1.get_default_graph()
    tf.compat.v1.import_graph_def(graph_def, name="")
    ys = [_tensor_by_name(graph, n, "y") for n in opts.ys]
    ys = _loss(ys, opts.ys, opts.loss)
    ancestors = _ancestors(ys)
    placeholders = {op.name: op.outputs[0] for op in graph.get_operations()
                    if op.type in ("Placeholder", "PlaceholderV2")
                    and op in ancestors}
    default = [(n, t) for n, t in placeholders.items() if _is_float(t.dtype)]
    handles = {op.name: op.outputs[0] for op in graph.get_operations()
               if op.type == "VarHandleOp"}
    xs = _select_xs(graph, opts.xs, handles, default)
    if not xs:
      raise UserError("no float placeholder reaches the ys; name xs with "
                      "--xs=name:0,...")
    names, xs = [n for n, _ in xs], [x for _, x in xs]
    _check_float(xs, names)
    feed = _feeds(opts, placeholders)
    return Built(ys, xs, feed, names, lambda sess: None)

  return Builder(f"GraphDef {opts.graphdef}", build)


# ----- Keras -----


def _keras_builder(opts):
  if not os.path.isfile(opts.keras):
    raise UserError(f"--keras: no file {opts.keras!r}")
  os.environ.setdefault("KERAS_BACKEND", "tensorflow")
  try:
    import keras  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError("--keras needs the keras package") from None
  try:
    model = keras.models.load_model(opts.keras)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f"--keras: cannot load {opts.keras!r}: "
                    f"{str(e).splitlines()[0][:200]}") from None
  keep = tempfile.TemporaryDirectory(prefix="tfgrad_keras_")
  export = os.path.join(keep.name, "saved_model")
  model.export(export, verbose=False)
  loss_name = _keras_loss_name(model)

  def model_loss(ys, names, opts_):
    del names
    return _keras_loss(loss_name, ys[0], opts_)

  result = _saved_model_builder(
      _Override(opts, signature="serving_default"),
      model_loss=model_loss if loss_name else None,
      label=(f"Keras {opts.keras} (loss: {loss_name or 'sum'})", export))
  result.keep = keep
  return result


class _Override:
  """`opts` with some attributes replaced."""

  def __init__(self, opts, **values):
    self._opts, self._values = opts, values

  def __getattr__(self, name):
    if name in self._values:
      return self._values[name]
    return getattr(self._opts, name)


_KERAS_LOSSES = {"mse": "mse", "mean_squared_error": "mse",
                 "mae": "mae", "mean_absolute_error": "mae",
                 "sparse_categorical_crossentropy": "sparse_xent",
                 "categorical_crossentropy": "xent",
                 "binary_crossentropy": "binary_xent"}


def _keras_loss_name(model):
  loss = getattr(model, "loss", None)
  name = loss if isinstance(loss, str) else getattr(
      loss, "__name__", getattr(loss, "name", None))
  return _KERAS_LOSSES.get(name) if name else None


def _keras_loss(kind, y, opts):
  """The compiled loss on random targets of y's shape (probabilities in,
  as Keras's default `from_logits=False`)."""
  rng = np.random.RandomState(opts.seed + 1)
  batch = tf.shape(y)[0]
  eps = tf.constant(1e-7, y.dtype)
  if kind == "sparse_xent":
    classes = int(y.shape[-1])
    labels = tf.random.stateless_uniform(
        [batch], seed=[opts.seed, 1], maxval=classes, dtype=tf.int32)
    picked = tf.gather(y, labels, axis=1, batch_dims=1)
    return tf.reduce_mean(-tf.math.log(picked + eps), name="loss")
  target = tf.random.stateless_uniform(tf.shape(y), seed=[opts.seed, 1],
                                       dtype=y.dtype)
  del rng
  if kind == "mse":
    return tf.reduce_mean(tf.square(y - target), name="loss")
  if kind == "mae":
    return tf.reduce_mean(tf.abs(y - target), name="loss")
  if kind == "xent":
    target = target / tf.reduce_sum(target, axis=-1, keepdims=True)
    return tf.reduce_mean(-tf.reduce_sum(target * tf.math.log(y + eps), -1),
                          name="loss")
  return tf.reduce_mean(-(target * tf.math.log(y + eps) + (1 - target)
                          * tf.math.log(1 - y + eps)), name="loss")


# ----- Python function -----


def _fn_builder(opts):
  spec = opts.fn
  if ":" not in spec:
    raise UserError(f"--fn={spec!r}: expected package.module:function")
  module_name, function_name = spec.split(":", 1)
  if os.getcwd() not in sys.path:
    sys.path.insert(0, os.getcwd())
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    raise UserError(f"--fn: no module {e.name!r} (from {module_name!r}; "
                    "is it on PYTHONPATH?)") from None
  if not callable(getattr(module, function_name, None)):
    raise unknown(f"function in {module_name}:", function_name,
                  [n for n in dir(module) if not n.startswith("_")
                   and callable(getattr(module, n))])
  fn = getattr(module, function_name)

  def build():
    result = fn()
    if not isinstance(result, (tuple, list)) or len(result) not in (2, 3):
      raise UserError(f"--fn: {spec} must return (ys, xs) or "
                      f"(ys, xs, feed_dict), not {type(result).__name__}")
    ys, xs = _listed(result[0]), _listed(result[1])
    graph = tf.compat.v1.get_default_graph()
    feed = {}
    for key, value in (result[2] if len(result) == 3 else {}).items():
      feed[_tensor_by_name(graph, key, "feed_dict key")
           if isinstance(key, str) else key] = value
    names = [x.name for x in xs]
    _check_float([x.handle if hasattr(x, "handle") else x for x in xs],
                 names)
    return Built(ys, xs, feed, names, _initialize_globals)

  return Builder(f"function {spec}", build)


def _listed(value):
  return list(value) if isinstance(value, (list, tuple)) else [value]


def builtin_builder(name, sizes):
  """A Builder for built-in model `name` with `sizes`."""
  return Builder(f"built-in {name}",
                 lambda: _builtin(lambda: models.build(name, **sizes)))
