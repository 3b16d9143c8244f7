"""Creating gradient ops cheaply: `emit.raw.<OpType>(...)` and `emit.const`.

`emit.raw` has the call shape of `tf.raw_ops` (keyword arguments named as
in the op's OpDef, same return structure), but builds the op with one call
to the graph's op constructor. TF's generated wrappers spend most of an
op's construction time in Python-side type inference and attribute
checking that the C++ graph repeats anyway; here each op type's OpDef is
read once and its type attributes are inferred from the input tensors.
Name scopes, control dependencies, devices, colocation and function-graph
captures behave as for any op built under the current default graph.

`emit.const` creates a `Const` directly. Inside a backprop pass
(`const_cache()` active), one constant per (graph, control-flow context,
dtype, shape, value) is created and then reused, so rules may ask for the
same shape vector or scalar as often as they like.

`with emit.after(grad):` makes the ops built in the block that depend on
forward values alone wait for the gradient (a control input), so they run,
and hold memory, only once it is there.

`emit.known_value(t)` is the value of a small constant this module created
in the current pass (None for any other tensor), so rules can read a shape
they were handed as a constant without building ops to look at it.

Nothing is folded: a constant computed from constants would leave the
constants it was computed from in the graph, unused.
"""

import collections
import contextlib
import functools
import inspect
import threading

import numpy as np
import tensorflow as tf

from tfgrad import tf_compat

SMALL_CONSTANT_ELEMENTS = 4096


# ----- attribute values -----

def _shape_proto(value):
  return tf.TensorShape(value).as_proto()


_SCALAR_ATTR = {
    "type": lambda v: tf_compat.attr_value(type=tf.as_dtype(v).as_datatype_enum),
    "bool": lambda v: tf_compat.attr_value(b=bool(v)),
    "int": lambda v: tf_compat.attr_value(i=int(v)),
    "float": lambda v: tf_compat.attr_value(f=float(v)),
    "string": lambda v: tf_compat.attr_value(s=tf.compat.as_bytes(v)),
    "shape": lambda v: tf_compat.attr_value(shape=_shape_proto(v)),
}


def _list_attr(kind, values):
  values = list(values)
  if kind == "list(int)":
    return tf_compat.attr_value(list=dict(i=[int(v) for v in values]))
  if kind == "list(type)":
    return tf_compat.attr_value(list=dict(
        type=[tf.as_dtype(v).as_datatype_enum for v in values]))
  if kind == "list(float)":
    return tf_compat.attr_value(list=dict(f=[float(v) for v in values]))
  if kind == "list(string)":
    return tf_compat.attr_value(list=dict(
        s=[tf.compat.as_bytes(v) for v in values]))
  if kind == "list(bool)":
    return tf_compat.attr_value(list=dict(b=[bool(v) for v in values]))
  if kind == "list(shape)":
    return tf_compat.attr_value(list=dict(
        shape=[_shape_proto(v) for v in values]))
  return None


_attr_cache = {}


def _attr(kind, value):
  """AttrValue proto for `value` of OpDef attr type `kind` (cached: rules
  pass the same handful of dtypes, flags and axes over and over)."""
  if isinstance(value, tf_compat.AttrValue):
    return value
  if isinstance(value, (list, tuple)):
    key = (kind, tuple(value))
  elif isinstance(value, (np.ndarray, tf.TensorShape)):
    key = None
  else:
    key = (kind, value)
  if key is not None:
    try:
      return _attr_cache[key]
    except (KeyError, TypeError):
      pass
  make = _SCALAR_ATTR.get(kind)
  proto = make(value) if make else _list_attr(kind, value)
  if proto is None:
    raise TypeError(f"emit: attribute kind '{kind}' is not supported")
  if key is not None and len(_attr_cache) < 100_000:
    try:
      # The first proto cached for a key is the one every thread uses.
      proto = _attr_cache.setdefault(key, proto)
    except TypeError:
      pass
    else:
      tf_compat.keep_serialized(proto)
  return proto


# ----- per-op-type signature, read once from the OpDef -----

_Arg = collections.namedtuple(
    "_Arg", "name type_attr number_attr type_list_attr fixed_type")


class _Signature:
  """What `raw.<OpType>` needs to know about an op type's OpDef."""

  def __init__(self, op_type):
    op_def = tf_compat.op_def(op_type)
    if op_def is None:
      raise AttributeError(f"emit.raw: no op type named '{op_type}'")
    self.op_type = op_type
    self.op_def = op_def
    # tf.raw_ops' keyword names: the OpDef's, except where TF's API
    # definitions rename an input (Sum's reduction_indices is `axis`) or,
    # once, an attribute (Squeeze's squeeze_dims is `axis`).
    params = [p for p in inspect.signature(
        getattr(tf.raw_ops, op_type)).parameters if p != "name"]
    n_in = len(op_def.input_arg)
    self.inputs = [
        _Arg(py_name, a.type_attr or None, a.number_attr or None,
             a.type_list_attr or None,
             tf.as_dtype(a.type) if a.type else None)
        for py_name, a in zip(params, op_def.input_arg)]
    self.attr_kinds = {a.name: a.type for a in op_def.attr}
    unknown = [p for p in params[n_in:] if p not in self.attr_kinds]
    unused = [a.name for a in op_def.attr
              if a.name not in params and not a.name[0].isupper()
              and a.name not in _inferred_attrs(op_def)]
    self.attr_alias = dict(zip(unknown, unused)) if len(unknown) == len(
        unused) else {}
    self.input_names = frozenset(a.name for a in self.inputs)
    self.attr_defaults = {
        a.name: a.default_value for a in op_def.attr
        if a.HasField("default_value")}
    outs = op_def.output_arg
    self.output_names = [a.name for a in outs]
    # per output arg: None for one tensor, else the attr giving its length
    self.output_lists = [(a.number_attr, a.type_list_attr)
                         if a.number_attr or a.type_list_attr else None
                         for a in outs]
    self.output_tuple = (collections.namedtuple(op_type, self.output_names)
                         if len(outs) > 1 else None)
    # (name, type attr, fixed type's enum) per input, when no input is a
    # list: `_build_tensors` handles calls of such types whose inputs are
    # all graph tensors; None otherwise.
    self.single_inputs = None if any(
        a.number_attr or a.type_list_attr for a in self.inputs) else [
            (a.name, a.type_attr,
             a.fixed_type.as_datatype_enum if a.fixed_type else None)
            for a in self.inputs]
    # type attribute -> the dtype enums its OpDef allows, where it limits
    # them, and their names in the OpDef's order (for the error)
    self.allowed_types = {a.name: frozenset(a.allowed_values.list.type)
                          for a in op_def.attr
                          if a.type == "type" and a.allowed_values.list.type}
    self.allowed_names = {
        a.name: ", ".join(tf.as_dtype(e).name
                          for e in a.allowed_values.list.type)
        for a in op_def.attr if a.name in self.allowed_types}

  def outputs(self, op):
    """The op's outputs in tf.raw_ops' structure."""
    if not self.output_names:
      return op
    flat = op.outputs
    if len(self.output_names) == 1:
      return list(flat) if self.output_lists[0] else flat[0]
    values, at = [], 0
    for length_attrs in self.output_lists:
      if length_attrs is None:
        values.append(flat[at])
        at += 1
        continue
      number_attr, type_list_attr = length_attrs
      size = (op.get_attr(number_attr) if number_attr
              else len(op.get_attr(type_list_attr)))
      values.append(list(flat[at:at + size]))
      at += size
    return self.output_tuple(*values)


@functools.lru_cache(maxsize=None)
def _signature(op_type):
  return _Signature(op_type)


def _is_tensor(v):
  return isinstance(v, tf.Tensor)


def _dtype_of_attr(attrs, name, defaults):
  proto = attrs.get(name)
  if proto is None:
    proto = defaults.get(name)
  if proto is None or not proto.type:
    return None
  return tf.as_dtype(proto.type)


def _inferred_attrs(op_def):
  """Attributes set from the inputs (types and list lengths)."""
  names = set()
  for a in op_def.input_arg:
    names.update(n for n in (a.type_attr, a.number_attr, a.type_list_attr)
                 if n)
  return names


# The `type` AttrValue of every dtype, by enum: built once, never mutated.
_TYPE_ATTRS = {}
for _dtype in (getattr(tf.dtypes, _n) for _n in dir(tf.dtypes)):
  if isinstance(_dtype, tf.dtypes.DType) and _dtype.as_datatype_enum < 100:
    _TYPE_ATTRS[_dtype.as_datatype_enum] = tf_compat.attr_value(
        type=_dtype.as_datatype_enum)
    tf_compat.keep_serialized(_TYPE_ATTRS[_dtype.as_datatype_enum])
del _dtype


def _build_tensors(sig, kwargs):
  """`_build` for the common call: every input one graph tensor of a
  non-reference dtype, type attributes only inferred, each from tensors
  that agree on it. Compares dtype enums where `_build` compares DTypes.
  None for any other call, which `_build` then handles (and explains)."""
  attrs = {}
  inputs = []
  for name, type_attr, fixed in sig.single_inputs:
    value = kwargs.get(name)
    if not isinstance(value, tf.Tensor):
      return None
    enum = value.dtype._type_enum  # pylint: disable=protected-access
    if fixed is not None:
      if enum != fixed:
        return None
    elif type_attr is not None:
      known = attrs.get(type_attr)
      if known is None:
        proto = _TYPE_ATTRS.get(enum)
        if proto is None or (type_attr in sig.allowed_types and
                             enum not in sig.allowed_types[type_attr]):
          return None
        attrs[type_attr] = proto
      elif known.type != enum:
        return None
    inputs.append(value)
  if len(kwargs) > len(inputs):
    for key, value in kwargs.items():
      if key in sig.input_names:
        continue
      key = sig.attr_alias.get(key, key)
      kind = sig.attr_kinds.get(key)
      if kind is None or key in attrs:
        return None
      try:  # what `_attr` finds in its cache for a hashable value
        attrs[key] = _attr_cache[(kind, value)]
      except (KeyError, TypeError):
        attrs[key] = _attr(kind, value)
  return inputs, inputs, attrs


def _build(sig, kwargs):
  """(flat inputs, attrs) for one `raw.<OpType>(**kwargs)` call."""
  if sig.single_inputs is not None:
    built = _build_tensors(sig, kwargs)
    if built is not None:
      return built
  attrs = {}
  for key, value in kwargs.items():
    if key in sig.input_names:
      continue
    key = sig.attr_alias.get(key, key)
    kind = sig.attr_kinds.get(key)
    if kind is None:
      raise TypeError(f"{sig.op_type}: unexpected argument '{key}'")
    attrs[key] = _attr(kind, value)
  values = []
  for arg in sig.inputs:
    try:
      value = kwargs[arg.name]
    except KeyError:
      raise TypeError(f"{sig.op_type}: missing input '{arg.name}'") from None
    if arg.number_attr or arg.type_list_attr:
      value = list(value)
      if arg.number_attr and arg.number_attr not in attrs:
        attrs[arg.number_attr] = _attr("int", len(value))
      if arg.type_attr and arg.type_attr not in attrs:
        first = next((v for v in value if _is_tensor(v)), None)
        if first is not None:
          attrs[arg.type_attr] = _inferred_type(sig, arg, first)
    elif arg.type_attr and arg.type_attr not in attrs and _is_tensor(value):
      attrs[arg.type_attr] = _inferred_type(sig, arg, value)
    values.append(value)
  flat, grouped = [], []
  for arg, value in zip(sig.inputs, values):
    if arg.number_attr or arg.type_list_attr:
      if arg.type_list_attr:
        items = [_as_tensor(v, None) for v in value]
        if arg.type_list_attr not in attrs:
          attrs[arg.type_list_attr] = _attr(
              "list(type)", [t.dtype.base_dtype for t in items])
      else:
        dtype = arg.fixed_type or _dtype_of_attr(attrs, arg.type_attr,
                                                 sig.attr_defaults)
        items = [_as_tensor(v, dtype) for v in value]
        if len({t.dtype.base_dtype for t in items}) > 1:
          raise TypeError(f"Tensors in list passed to '{arg.name}' of "
                          f"'{sig.op_type}' Op have types "
                          f"{[t.dtype.base_dtype.name for t in items]} "
                          "that don't all match")
        if arg.type_attr and arg.type_attr not in attrs and items:
          attrs[arg.type_attr] = _inferred_type(sig, arg, items[0])
      flat.extend(items)
      grouped.append(items)
    else:
      dtype = arg.fixed_type or (
          _dtype_of_attr(attrs, arg.type_attr, sig.attr_defaults)
          if arg.type_attr else None)
      t = _as_tensor(value, dtype)
      if t is value and dtype is not None and t.dtype.base_dtype != dtype \
          and (arg.fixed_type or arg.type_attr in attrs):
        raise TypeError(f"Input '{arg.name}' of '{sig.op_type}' Op has type "
                        f"{t.dtype.base_dtype.name} that does not match "
                        f"type {dtype.name} expected there")
      if arg.type_attr and arg.type_attr not in attrs:
        attrs[arg.type_attr] = _inferred_type(sig, arg, t)
      flat.append(t)
      grouped.append(t)
  return flat, grouped, attrs


def _inferred_type(sig, arg, t):
  """The `type` attribute that input `arg`'s tensor `t` sets; a TypeError,
  as `tf.raw_ops` raises, where the OpDef does not allow its dtype."""
  dtype = t.dtype.base_dtype
  allowed = sig.allowed_types.get(arg.type_attr)
  if allowed and dtype.as_datatype_enum not in allowed:
    raise TypeError(f"Value passed to parameter '{arg.name}' of "
                    f"'{sig.op_type}' has DataType {dtype.name} not in list "
                    f"of allowed values: {sig.allowed_names[arg.type_attr]}")
  return _attr("type", dtype)


def _as_tensor(value, dtype):
  if _is_tensor(value):
    return value
  if isinstance(value, (tf.IndexedSlices, tf.Variable)) or hasattr(
      value, "_as_graph_element"):
    return tf.convert_to_tensor(value, dtype=dtype)
  return const(value, dtype)


class _RawOps:
  """`tf.raw_ops` look-alike whose ops are built by `emit` (see module doc)."""

  def __getattr__(self, op_type):
    if op_type.startswith("_"):
      raise AttributeError(op_type)
    sig = _signature(op_type)
    tf_fn = getattr(tf.raw_ops, op_type)

    def make_op(name=None, **kwargs):
      if tf_compat.executing_eagerly():
        return tf_fn(name=name, **kwargs)
      inputs, grouped, attrs = _build(sig, kwargs)
      graph = tf_compat.default_graph()
      waits = _state.after
      wait_for = _waits_for(graph, inputs, waits[-1]) if waits else None
      if wait_for and op_type in _MOVED_INTO_FORWARD_LOOP \
          and tf_compat.control_flow_context(graph) is not None:
        wait_for = None
      op = tf_compat.create_op(graph, op_type, inputs, attrs, sig.op_def,
                               name, grouped, wait_for)
      if waits:
        waits[-1][1].add(op)
      return sig.outputs(op)

    make_op.__name__ = op_type
    make_op.__doc__ = f"Builds a {op_type} op (emit.raw; see tf.raw_ops)."
    setattr(self, op_type, make_op)
    return make_op


raw = _RawOps()

# Op types TF's v1 WhileContext moves from a gradient loop into the forward
# loop of their input (the shape is then pushed per iteration, not the
# tensor): a wait on a gradient there would cross loop frames.
_MOVED_INTO_FORWARD_LOOP = frozenset(["Shape", "Size", "Rank"])


# ----- state of the gradient calls running on this thread -----

class _ThreadState(threading.local):
  """What the blocks of this module that are open on the current thread
  have set up, innermost last. Thread-local, because several threads may
  build gradients at once (on different graphs or the same one) and rules
  cannot be handed this state through their TF signature."""

  def __init__(self):
    super().__init__()
    self.after = []  # (ops to wait for, ops built in the block)
    self.caches = []  # _ConstCache per open const_cache()


_state = _ThreadState()


# ----- scheduling: derivatives computed once their gradient is there -----


class after:  # pylint: disable=invalid-name
  """Ops `raw` builds in this block wait for the ops producing `grads`
  (control inputs), unless an input already makes them wait: one of their
  inputs comes from those ops or was built in the block. A rule's factors
  that depend on forward values only (cos(x) in the rule of sin) are
  otherwise computed as soon as the forward pass has x, and their buffers
  live until the gradient arrives; waiting keeps them short-lived, as
  stock TF's rules do by building such factors under
  `control_dependencies([grad])`. A gradient that is a constant, a known
  value or None imposes no wait."""

  __slots__ = ("_ops",)

  def __init__(self, *grads):
    self._ops = tuple(op for op in map(_producer, grads) if op is not None)

  def __enter__(self):
    # (a class, not a generator context manager: one is entered per rule)
    if self._ops:
      _state.after.append((self._ops, set()))

  def __exit__(self, *exc):
    if self._ops:
      _state.after.pop()
    return False


def _producer(grad):
  if isinstance(grad, tf.IndexedSlices):
    grad = grad.values
  if not _is_tensor(grad) or tf_compat.is_eager_tensor(grad):
    return None
  op = grad.op
  return None if op.type == "Const" else op


def _waits_for(graph, inputs, block):
  """The control inputs the innermost `after` block adds to an op with
  these inputs (None for none)."""
  wait_for, built = block
  if not inputs or wait_for[0].graph is not graph:
    return None
  for t in inputs:
    if t.op in built or t.op in wait_for:
      return None
  return wait_for


# ----- constants -----

class _ConstCache:
  """Constants of one backprop pass, and the values of the ones it made."""

  def __init__(self):
    self.by_key = {}
    # id(Tensor) -> (Tensor, np.ndarray), small constants only (tensors of
    # function graphs are unhashable)
    self.values = {}


@contextlib.contextmanager
def const_cache():
  """Within this context (on this thread), equal constants are created
  once (per graph, control-flow context and placement) and their values
  are known to `known_value`."""
  caches = _state.caches
  caches.append(_ConstCache())
  try:
    yield
  finally:
    caches.pop()


def const(value, dtype=None, name="Const"):
  """A `Const` tensor holding `value` (converted to `dtype` when given)."""
  if dtype is not None:
    dtype = tf.as_dtype(dtype).base_dtype
  array = np.asarray(value, dtype=dtype.as_numpy_dtype if dtype else None)
  if dtype is None:
    dtype = _default_dtype(value, array)
    array = array.astype(dtype.as_numpy_dtype, copy=False)
  graph = tf_compat.default_graph()
  caches = _state.caches
  cache = caches[-1] if caches else None
  key = None
  if cache is not None and not tf_compat.has_control_dependencies(graph):
    device = tf_compat.colocation_device(graph)
    key = (graph, tf_compat.control_flow_context(graph), device, dtype,
           array.shape, array.tobytes())
    hit = cache.by_key.get(key)
    if hit is not None:
      return hit
  attrs = {"value": _value_attr(array, dtype, key[-1] if key else None),
           "dtype": _attr("type", dtype)}
  if key is not None:
    # A shared constant belongs to no one op: it is created outside the
    # colocation of the op whose rule asked first, but on that op's device,
    # and shared only by rules colocated on the same device (a constant on
    # another device would cost a transfer per step that stock TF's
    # per-op constants do not).
    with tf_compat.no_colocation(graph, device):
      t = tf_compat.create_op(graph, "Const", [], attrs, None, name,
                              []).outputs[0]
    cache.by_key[key] = t
  else:
    t = tf_compat.create_op(graph, "Const", [], attrs, None, name,
                            []).outputs[0]
  if cache is not None and array.size <= SMALL_CONSTANT_ELEMENTS:
    cache.values[id(t)] = (t, array)
  return t


# (tf dtype, shape, bytes) -> the `value` AttrValue of a small numeric
# constant: rules ask for the same shape vectors and scalars in every call.
_value_attrs = {}
_VALUE_ATTR_BYTES = 256  # larger values are built per constant
_VALUE_ATTRS_KEPT = 20_000


def _value_attr(array, dtype, data=None):
  """The `value` AttrValue of a Const holding `array` (`data` is
  `array.tobytes()` when the caller has it). For small numeric arrays, the
  first one built for their dtype, shape and bytes, which no one mutates
  and every thread uses, serialized once."""
  if array.nbytes > _VALUE_ATTR_BYTES or array.dtype.kind not in "biufc":
    return tf_compat.attr_value(tensor=_tensor_proto(array, dtype))
  key = (dtype, array.shape, array.tobytes() if data is None else data)
  proto = _value_attrs.get(key)
  if proto is None:
    proto = tf_compat.attr_value(tensor=_tensor_proto(array, dtype))
    if len(_value_attrs) < _VALUE_ATTRS_KEPT:
      proto = _value_attrs.setdefault(key, proto)
      tf_compat.keep_serialized(proto)
  return proto


# TensorProto fields holding one value of these dtypes (`make_tensor_proto`
# puts more than one in `tensor_content`).
_SCALAR_FIELD = {tf.float32: "float_val", tf.float64: "double_val",
                 tf.int32: "int_val", tf.int64: "int64_val"}


def _tensor_proto(array, dtype):
  """`tf.make_tensor_proto(array, dtype=dtype)` (same proto): built
  directly for the common dtypes, whose generic path costs a third of an
  op's construction."""
  field = _SCALAR_FIELD.get(dtype)
  if field is None:
    return tf.make_tensor_proto(array, dtype=dtype)
  proto = tf_compat.tensor_proto(dtype, array.shape)
  if array.size > 1:
    proto.tensor_content = array.tobytes()
  elif array.size == 1:
    getattr(proto, field).append(array.item())
  return proto


def _default_dtype(value, array):
  """TF's dtype for a value given without one: numpy keeps its own; Python
  floats are float32, Python ints int32 (int64 when they do not fit)."""
  if isinstance(value, (np.ndarray, np.generic)):
    return tf.as_dtype(array.dtype)
  if array.dtype == np.float64:
    return tf.float32
  if array.dtype == np.int64:
    fits = array.size == 0 or np.abs(array).max() < 2**31
    return tf.int32 if fits else tf.int64
  return tf.as_dtype(array.dtype)


def known_value(t):
  """The value of `t` if `emit.const` made it in this pass, else None."""
  caches = _state.caches
  if not caches:
    return None
  entry = caches[-1].values.get(id(t))
  return entry[1] if entry is not None and entry[0] is t else None


# ----- gradients whose value is known while the graph is built -----

class Known:
  """A gradient whose value is a small array known at construction time
  (the default ones seed, and what rules marked
  `registry.takes_known_gradients` compute from it). No op holds it until
  `materialize` makes one constant, so values that only ever feed such
  rules leave nothing behind in the graph."""

  __slots__ = ("value", "dtype")

  def __init__(self, value, dtype):
    self.dtype = tf.as_dtype(dtype)
    self.value = np.asarray(value, self.dtype.as_numpy_dtype)

  @property
  def shape(self):
    return tf.TensorShape(self.value.shape)

  def __repr__(self):
    return f"Known(shape={self.value.shape}, dtype={self.dtype.name})"


def materialize(g):
  """`g` as a graph tensor: a Known becomes a (shared) constant."""
  if isinstance(g, Known):
    return const(g.value, g.dtype)
  return g
