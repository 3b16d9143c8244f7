"""Every touchpoint with TensorFlow internals, in one place.

The engine needs a few things TF exposes only privately: the TF gradient
registry (our fallback and the home of `gradient_override_map` and
`tf.custom_gradient` overrides), colocation for gradients, function-graph
captures, XLA attribute scopes and the v1 control-flow loop state. Keeping
them here means a TF upgrade that moves one of them breaks exactly one module.
"""

import contextlib
import functools
import os
import sys
import threading
import weakref

import tensorflow as tf
from tensorflow.python.eager import backprop_util
from tensorflow.python.framework import op_def_registry
from tensorflow.python.framework import ops as tf_ops
from tensorflow.python.ops import default_gradient
from tensorflow.python.ops import gen_functional_ops
from tensorflow.python.ops import resource_variable_ops

from tensorflow.core.framework import attr_value_pb2
from tensorflow.core.framework import function_pb2 as _function_pb2
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.framework import node_def_pb2
from tensorflow.python.client import pywrap_tf_session as _c_api
from tensorflow.python.framework import c_api_util
from tensorflow.python.framework import traceable_stack
from tensorflow.python.util import tf_stack as _tf_stack
from tensorflow.python.util import _tf_stack as _pywrap_tf_stack

from tfgrad import v1_loops

Tensor = tf.Tensor
IndexedSlices = tf.IndexedSlices

_FLOAT_LIKE = frozenset([tf.float16, tf.bfloat16, tf.float32, tf.float64,
                         tf.complex64, tf.complex128, tf.resource])


# Never trainable, whatever TF's flags say (only the quantized integer
# dtypes can be switched to trainable): answered without TF's IsTrainable,
# whose tensor-or-dtype protocol check costs about half an op's creation.
_NEVER_TRAINABLE = frozenset([tf.bool, tf.string, tf.int8, tf.int16,
                              tf.int32, tf.int64, tf.uint8, tf.uint16,
                              tf.uint32, tf.uint64])


def is_trainable(t):
  """True if `t` can carry a gradient (TF's IsTrainable, fast paths first)."""
  dtype = t.dtype
  if dtype in _FLOAT_LIKE:
    return True
  if dtype in _NEVER_TRAINABLE:
    return False
  if dtype == tf.variant:
    return backprop_util.IsTrainable(t)
  return backprop_util.IsTrainable(dtype)


_DT_RESOURCE = tf.resource.as_datatype_enum


def is_resource(t):
  """`t.dtype == tf.resource`, without DType's Python-level comparison."""
  return t.dtype._type_enum == _DT_RESOURCE  # pylint: disable=protected-access


def same_static_shape(a, b):
  """True if graph tensors `a` and `b` both have fully known static shapes
  and they are equal, read from the graph without building a TensorShape
  for either (the check backprop makes for every gradient it hands on,
  whose answer is nearly always yes). False otherwise, and for anything
  but graph tensors."""
  try:
    a_dims, a_unknown = a._shape  # pylint: disable=protected-access
    b_dims, b_unknown = b._shape  # pylint: disable=protected-access
  except AttributeError:
    return False
  return (not a_unknown and not b_unknown and a_dims == b_dims
          and None not in a_dims)


def is_eager_tensor(t):
  return isinstance(t, tf_ops.EagerTensor)


def is_function_graph(graph):
  return getattr(graph, "_building_function", False)


def function_graph_chain(graph):
  """`graph` and its enclosing function graphs, innermost first."""
  chain = []
  while is_function_graph(graph):
    chain.append(graph)
    graph = graph.outer_graph
  return chain


def captures(func_graph):
  """(outer tensor, inner placeholder) pairs captured by a function graph."""
  return func_graph.captures


def is_resource_variable(x):
  return resource_variable_ops.is_resource_variable(x)


def tf_registry_lookup(op_type):
  """TF's registered gradient for `op_type`; LookupError when absent."""
  return tf_ops.gradient_registry.lookup(op_type)


def tf_registry_keys():
  return list(tf_ops.gradient_registry.list())


# Private attributes the engine reads: colocation groups, the gradient
# override name, XLA compilation tags.
_READ_PRIVATE_ATTRS = ("_class", "_gradient_op_type", "_Xla")
_READ_PRIVATE_MARKERS = tuple(k.encode() for k in _READ_PRIVATE_ATTRS)


def private_attrs(op):
  """The op's attributes among `_class`, `_gradient_op_type` and `_Xla*`.

  One NodeDef read costs a fraction of the failing `op.get_attr` lookups
  it replaces (two per op: each raises and converts an exception), and
  the serialized NodeDef is parsed only when one of those names occurs in
  it at all, which for most ops it does not."""
  data = op._node_def  # pylint: disable=protected-access
  for marker in _READ_PRIVATE_MARKERS:
    if marker in data:
      break
  else:
    return {}
  return {k: v for k, v in node_def_pb2.NodeDef.FromString(data).attr.items()
          if k.startswith(_READ_PRIVATE_ATTRS)}


def bool_attrs(op, *names):
  """`op.get_attr(name)` for each of `names`, boolean attributes the op's
  type always has (MatMul's `transpose_a`, say), read by the C API's
  typed getter: a fraction of `get_attr`'s buffer and proto round trip,
  which a rule of a frequent op type otherwise pays per attribute."""
  c_op = op._c_op  # pylint: disable=protected-access
  try:
    return tuple(bool(_c_api.TF_OperationGetAttrBool(c_op, name))
                 for name in names)
  except tf.errors.OpError:  # absent or not a bool: get_attr's own error
    return tuple(op.get_attr(name) for name in names)


def attr_protos(op, names):
  """{name: AttrValue} for the attributes `names` of `op`, as `op.get_attr`
  would read them but as protos (`emit.raw` takes them as they are), from
  one NodeDef read: one `get_attr` call costs about as much as parsing
  all of a small op's attributes. The protos belong to the caller. A name
  the op lacks raises `op.get_attr`'s ValueError."""
  attrs = node_def_pb2.NodeDef.FromString(op._node_def).attr  # pylint: disable=protected-access
  result = {}
  for name in names:
    value = attrs.get(name)
    if value is None:
      op.get_attr(name)  # raises
    result[name] = value
  return result


def override(op, attrs):
  """The gradient TF would use for `op` instead of its type's: a function
  attached to the op (tf.function call ops, control flow v2) or the name
  from `gradient_override_map` / `tf.custom_gradient`. Returns
  (kind, value): ("function", fn), ("type", op_type_name) or (None, None).
  `attrs` is `private_attrs(op)`.
  """
  fn = op._gradient_function  # pylint: disable=protected-access
  if fn:
    return "function", fn
  name = attrs.get("_gradient_op_type")
  if name is None:
    return None, None
  return "type", name.s.decode()


def new_gradient_uid(graph):
  return graph.unique_name("uid")


def colocate_for_gradient(op, gradient_uid, ignore_existing=False):
  return tf_ops._colocate_with_for_gradient(  # pylint: disable=protected-access
      op, gradient_uid, ignore_existing=ignore_existing)


def _colocation_groups(name, attrs):
  """What `Operation.colocation_groups()` returns, from the op's private
  attributes (`private_attrs`) instead of a failing `_class` lookup."""
  class_attr = attrs.get("_class")
  groups = [g for g in class_attr.list.s if g.startswith(b"loc:@")] \
      if class_attr is not None else []
  return groups or [f"loc:@{name}".encode()]


# The code location of a colocation pushed without one (a
# `_ColocationTarget`'s), shared by the ops created under such stand-ins:
# nothing writes a TraceableObject once recorded.
_NO_CODE_LOCATION = traceable_stack.TraceableObject(None)


class _ColocationTarget:
  """Stands for a forward op on the graph's colocation stack, reading its
  name, device and colocation groups only once and only if an op is
  created under it (TF re-reads the groups, through a failing `_class`
  lookup, for every op created under the scope). TF pushes such stand-ins
  (name, device, no colocation_groups) for variables itself."""

  __slots__ = ("_op", "_attrs_fn", "_name", "_device", "_groups",
               "_class_attr", "_code_locations")

  def __init__(self, op, attrs_fn):
    self._op, self._attrs_fn = op, attrs_fn
    self._name = self._device = self._groups = None
    self._class_attr = self._code_locations = None

  @property
  def name(self):
    if self._name is None:
      self._name = self._op.name
    return self._name

  @property
  def device(self):
    if self._device is None:
      self._device = self._op.device
    return self._device

  def colocation_groups(self):
    if self._groups is None:
      self._groups = _colocation_groups(self.name, self._attrs_fn())
    return self._groups

  def placement(self):
    """(serialized `_class` AttrValue, device, colocation code locations)
    of an op created under this stand-in alone, as TF's op constructor
    would set them; computed once for all the ops of the forward op."""
    if self._class_attr is None:
      groups = self.colocation_groups()
      self._class_attr = serialized_string_list_attr(
          groups if len(groups) == 1 else sorted(set(groups)))
      # what `Graph._snapshot_colocation_stack_metadata` records for a
      # stack holding only this stand-in (pushed with no code location)
      self._code_locations = {self.name: _NO_CODE_LOCATION}
    return self._class_attr, self.device, self._code_locations


class colocated_with_op:  # pylint: disable=invalid-name
  """`colocate_for_gradient(op, uid)` for the common case (an Operation,
  no v1 control-flow context), without TF's per-created-op costs; other
  cases go to TF's own context manager. Devices of ops created inside come
  from `op`, as with TF's colocation. `attrs_fn()` returns
  `private_attrs(op)`."""

  __slots__ = ("graph", "op", "uid", "attrs_fn", "_tf_ctx", "_saved_devices")

  def __init__(self, graph, op, gradient_uid, attrs_fn):
    self.graph, self.op, self.uid = graph, op, gradient_uid
    self.attrs_fn = attrs_fn
    self._tf_ctx = None

  def __enter__(self):
    g = self.graph
    if (not isinstance(self.op, tf_ops.Operation)
        or tf_ops._get_enclosing_context(g) is not None):  # pylint: disable=protected-access
      self._tf_ctx = colocate_for_gradient(self.op, self.uid)
      return self._tf_ctx.__enter__()
    devices = g._device_function_stack  # pylint: disable=protected-access
    if devices:  # an empty stack is what colocation would put in its place
      g._device_function_stack = traceable_stack.TraceableStack()  # pylint: disable=protected-access
      self._saved_devices = devices
    else:
      self._saved_devices = None
    g._colocation_stack._stack.append(  # pylint: disable=protected-access
        traceable_stack.TraceableObject(
            _ColocationTarget(self.op, self.attrs_fn)))
    return None

  def __exit__(self, *exc):
    if self._tf_ctx is not None:
      return self._tf_ctx.__exit__(*exc)
    g = self.graph
    if self._saved_devices is not None:
      g._device_function_stack = self._saved_devices  # pylint: disable=protected-access
    g._colocation_stack.pop_obj()  # pylint: disable=protected-access
    return False


class _OriginalOps(threading.local):
  """Per thread: the forward op whose rule is running and its graph, so
  the ops emit builds for it record it as their original op (TF sets
  `Graph._default_original_op`, an attribute every thread shares, for
  the same purpose; tfgrad does not write it)."""
  graph = None
  op = None


_original = _OriginalOps()


class op_grad_scope:  # pylint: disable=invalid-name
  """Name scope `<op name>_grad` in `graph` plus `op` as the original op
  of what emit builds in `src_graph`, as TF sets both around a rule call,
  in one cheap context (the op's name is already a valid scope name). The
  name stack is the graph's per-thread one."""

  __slots__ = ("graph", "src_graph", "op", "_name_stack", "_saved")

  def __init__(self, graph, src_graph, op):
    self.graph, self.src_graph, self.op = graph, src_graph, op

  def __enter__(self):
    g = self.graph
    self._name_stack = g._name_stack  # pylint: disable=protected-access
    scope = g.unique_name(self.op.name + "_grad")
    g._name_stack = scope  # pylint: disable=protected-access
    self._saved = _original.graph, _original.op
    _original.graph, _original.op = self.src_graph, self.op
    return scope + "/"

  def __exit__(self, *exc):
    self.graph._name_stack = self._name_stack  # pylint: disable=protected-access
    _original.graph, _original.op = self._saved
    return False


def _original_op(graph):
  """The original op of an op created now in `graph` (see _OriginalOps)."""
  if _original.graph is graph:
    return _original.op
  return graph._default_original_op  # pylint: disable=protected-access


class _HeldMutationLocks(threading.local):
  graphs = ()  # graphs whose mutation lock this thread holds, via below


_mutating = _HeldMutationLocks()


@contextlib.contextmanager
def mutation_lock(graph):
  """`graph`'s mutation lock (the one TF takes around creating and
  mutating an op, so that no Session.run of the graph starts in between),
  held for a whole gradient call as stock `tf.gradients` holds it; ops
  the lean path creates in `graph` meanwhile do not take it again."""
  with graph._mutation_lock():  # pylint: disable=protected-access
    saved = _mutating.graphs
    _mutating.graphs = saved + (graph,)
    try:
      yield
    finally:
      _mutating.graphs = saved


_graph_locks = weakref.WeakKeyDictionary()  # graph -> RLock
_graph_locks_guard = threading.Lock()


def building_lock(graph):
  """A re-entrant lock per graph, held by a gradient call building ops in
  it. TF keeps a graph's colocation, device and control-dependency stacks
  shared between threads (unless the graph was switched to thread-local
  stacks), and a gradient call pushes onto them for each op it
  differentiates: two calls building in one graph at once would see each
  other's scopes. Calls on different graphs do not wait for each other."""
  with _graph_locks_guard:
    lock = _graph_locks.get(graph)
    if lock is None:
      lock = _graph_locks[graph] = threading.RLock()
  return lock


_XLA_KEYS = ("_XlaCompile", "_XlaSeparateCompiledGradients", "_XlaScope")


def xla_attr_scope(op, attrs, func_call, grad_scope):
  """Context that tags gradient ops for XLA when the forward op is compiled
  (it must carry all three XLA attributes, as `jit_scope` sets them).
  `attrs` is `private_attrs(op)`."""
  if func_call is not None:
    attrs = func_call.cached_definition.attr
  elif not all(k in attrs for k in _XLA_KEYS):
    return contextlib.nullcontext()
  if not attrs["_XlaCompile"].b:
    return contextlib.nullcontext()
  scope = attrs["_XlaScope"].s.decode()
  if attrs["_XlaSeparateCompiledGradients"].b:
    suffix = grad_scope.rstrip("/").replace("/", "_")
    scope = f"{scope}_grad_{suffix}"
  attr_map = {"_XlaCompile": attr_value_pb2.AttrValue(b=True),
              "_XlaScope": attr_value_pb2.AttrValue(s=scope.encode())}
  return op.graph._attr_scope(attr_map)  # pylint: disable=protected-access


def zeros_for_output(op, index):
  """Zeros standing in for the missing gradient of `op.outputs[index]`
  (outside v1 gradient loops; see `v1_loops.zeros_outside_loops`)."""
  return v1_loops.zeros_outside_loops(op, index)


def supports_default_grad(t):
  return default_gradient.supports_default_grad(t)


def zeros_like_unconnected(t):
  """Zeros for an unconnected x; for a resource handle, the variable's shape
  and dtype (stock TF mis-handles this case)."""
  if t.dtype == tf.resource:
    shape, dtype = default_gradient.shape_and_dtype(t)
    if shape.is_fully_defined():
      return tf.zeros(shape, dtype)
    return tf.zeros(tf.raw_ops.VariableShape(input=t), dtype)
  return tf.zeros_like(t, dtype=default_gradient.get_zeros_dtype(t))


# ----- building ops (emit) -----

AttrValue = attr_value_pb2.AttrValue


def tensor_proto(dtype, shape):
  """An empty TensorProto of `dtype` and `shape` (a tuple of ints)."""
  return tensor_pb2.TensorProto(
      dtype=dtype.as_datatype_enum,
      tensor_shape=tensor_shape_pb2.TensorShapeProto(
          dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape]))


def attr_value(**fields):
  """An AttrValue proto; `list=dict(...)` fills its ListValue."""
  items = fields.pop("list", None)
  proto = AttrValue(**fields)
  if items is not None:
    proto.list.CopyFrom(AttrValue.ListValue(**items))
  return proto


def _varint(n):
  if n < 0x80:
    return bytes((n,))
  out = bytearray()
  while n > 0x7F:
    out.append((n & 0x7F) | 0x80)
    n >>= 7
  out.append(n)
  return bytes(out)


def serialized_string_list_attr(values):
  """`AttrValue(list=ListValue(s=values)).SerializeToString()`, encoded
  directly (field 1, `list`, holding field 2, `s`, once per value): the
  same bytes without building two protos per forward op."""
  inner = b"".join(b"\x12" + _varint(len(v)) + v for v in values)
  return b"\x0a" + _varint(len(inner)) + inner


# id(AttrValue) -> (the proto, its serialized bytes). The entry holds the
# proto itself, so its id is never reused by another object while the
# entry exists (two threads caching one attribute at once both record
# theirs; the one the cache drops stays alive here).
_serialized_attrs = {}


def keep_serialized(proto):
  """Records the serialization of `proto`, which the caller never mutates;
  ops built with it then skip serializing it."""
  _serialized_attrs[id(proto)] = (proto, proto.SerializeToString())


def forget_serialized(proto):
  """Drops what `keep_serialized(proto)` recorded (for protos that live
  only as long as one measurement)."""
  entry = _serialized_attrs.get(id(proto))
  if entry is not None and entry[0] is proto:
    del _serialized_attrs[id(proto)]


def _serialized(value):
  """`value.SerializeToString()`, recorded by `keep_serialized` or not."""
  entry = _serialized_attrs.get(id(value))
  if entry is not None and entry[0] is value:
    return entry[1]
  return value.SerializeToString()


class _HeldCGraph(threading.local):
  graph = None
  c_graph = None


_held = _HeldCGraph()


@contextlib.contextmanager
def building_in(graph):
  """Keeps `graph`'s C graph open while the block creates ops in it (TF
  opens and closes it around every op); nests, per thread."""
  if _held.graph is graph:
    yield
    return
  saved = _held.graph, _held.c_graph
  with graph._c_graph.get() as c_graph:  # pylint: disable=protected-access
    _held.graph, _held.c_graph = graph, c_graph
    try:
      yield
    finally:
      _held.graph, _held.c_graph = saved


# ----- the creation stack trace of the ops a gradient call builds -----

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# Frames of these files are the engine's: a gradient op's stack trace ends
# where the caller's code called into them (tfgrad/cli holds tools, whose
# frames are callers).
_ENGINE_DIRS = (_PACKAGE_DIR + os.sep,
                os.path.join(os.path.dirname(_PACKAGE_DIR), "ops") + os.sep)
_CALLER_DIRS = (os.path.join(_PACKAGE_DIR, "cli") + os.sep,)
_TF_DIR = os.path.dirname(os.path.abspath(tf.__file__)) + os.sep


class _CallTrace(threading.local):
  trace = None  # the stack trace of this thread's outermost gradient call


_call_trace = _CallTrace()


def _is_engine_frame(filename):
  return filename.startswith(_ENGINE_DIRS) and not filename.startswith(
      _CALLER_DIRS)


def _caller_stack_trace():
  """TF's stack trace of the code that called the gradient engine, as
  `tf_stack.extract_stack` records it: this thread's stack, with the files
  of the engine's frames inside the caller's added to the trace's filter
  (to those of the thread's own filter, TF's `StackTraceFilter` stack).
  Dropping the innermost frames by `stacklevel` instead would not do: TF's
  error messages read the filter only (and a `stacklevel` together with a
  filter makes TF's `last_user_frame` fail)."""
  frame = sys._getframe(0)  # pylint: disable=protected-access
  engine_files = set()
  while frame is not None:
    filename = frame.f_code.co_filename
    if _is_engine_frame(filename):
      engine_files.add(filename)
    elif not filename.startswith(_TF_DIR):
      break
    frame = frame.f_back
  if frame is None:
    # No caller frame would be left: TF's error messages fail on a trace
    # without one (`last_user_frame`); each op then takes its own trace.
    return None
  del frame
  # (what `tf_stack.extract_stack` passes, TF 2.16-2.21)
  thread_key = _tf_stack._get_thread_key()  # pylint: disable=protected-access
  mapper = _tf_stack._source_mapper_stacks[thread_key][-1]  # pylint: disable=protected-access
  user_filter = _tf_stack._source_filter_stacks[thread_key][-1]  # pylint: disable=protected-access
  filtered = _file_set(
      frozenset(user_filter.get_filtered_filenames()) | engine_files)
  return _pywrap_tf_stack.extract_stack(mapper.internal_map, filtered, 0)


_file_sets = {}
_file_sets_lock = threading.Lock()


def _file_set(filenames):
  """TF's C++ set of `filenames` for a stack trace's filter, one per set
  of names, never freed: a trace keeps a pointer to its filter, not a
  reference (TF keeps its own filters alive on its thread stacks)."""
  with _file_sets_lock:
    file_set = _file_sets.get(filenames)
    if file_set is None:
      file_set = _file_sets[filenames] = _pywrap_tf_stack.PyBindFileSet()
      file_set.update_to(set(filenames))
  return file_set


class caller_stack_trace:  # pylint: disable=invalid-name
  """Within the block, ops the lean path builds on this thread get one
  stack trace: the caller's code up to its call of the engine, taken once
  at the outermost block. TF's error messages show the frames of a failing
  op's trace outside TF itself ("defined at"); for stock's gradient ops
  those are the caller's frames, since the rest is TF's. A trace taken
  per op would add the engine's frames (and cost about a tenth of a
  gradient op's construction: TF walks the whole Python stack)."""

  def __enter__(self):
    self._outermost = _call_trace.trace is None
    if self._outermost:
      _call_trace.trace = _caller_stack_trace()

  def __exit__(self, *exc):
    if self._outermost:
      _call_trace.trace = None


def op_def(op_type):
  """The registered OpDef of `op_type`, or None."""
  return op_def_registry.get(op_type)


default_graph = tf_ops.get_default_graph
executing_eagerly = tf.executing_eagerly


def create_op(graph, op_type, inputs, attrs, op_def_proto, name,
              grouped=None, wait_for=None, use_control_dependencies=True):
  """One op through the graph's own constructor, below TF's generated
  wrappers: name scope, control dependencies, device and colocation
  stacks, XLA attribute scopes and function-graph captures all apply.

  `grouped` is `inputs` with list-valued arguments as lists. When given,
  and no capture or v1 control-flow context is involved, the op is built
  by the lean path below (inputs from an outer graph are captured first
  where the function graph asks for it, `_captured_first`); in a v1 while
  context, by the lean path plus what `WhileContext.AddOp` does (`_create_op_in_loop`); otherwise by
  `Graph._create_op_internal`.
  `wait_for`, ops of `graph`, become control inputs too. Without
  `use_control_dependencies`, the graph's control dependency scopes are
  ignored, as under `control_dependencies(None)` but staying in the
  current control-flow context (the v1 loop machinery's own ops, ordered
  by the loop's triggers)."""
  if grouped is not None:
    lean = _lean_path_applies(graph, inputs)
    if not lean:
      inputs, grouped = _captured_first(graph, op_type, inputs, grouped)
      lean = _lean_path_applies(graph, inputs)
    if lean:
      if use_control_dependencies:
        return _create_op_lean(graph, op_type, inputs, grouped, attrs, name,
                               wait_for)
      return _create_op_lean(graph, op_type, inputs, grouped, attrs, name,
                             wait_for, (), False)
    loop = _lean_loop_context(graph, op_type, inputs)
    if loop is not None:
      op = _create_op_in_loop(graph, loop, op_type, inputs, grouped, attrs,
                              name, wait_for, use_control_dependencies)
      if op is not None:
        return op
  waiting = (graph.control_dependencies(list(wait_for)) if wait_for
             else contextlib.nullcontext())
  if not use_control_dependencies:
    ctxt = graph._get_control_flow_context()  # pylint: disable=protected-access
    with graph.control_dependencies(None), v1_loops.inside(ctxt), waiting:
      op = graph._create_op_internal(  # pylint: disable=protected-access
          op_type, inputs, name=name, attrs=attrs, op_def=op_def_proto)
  else:
    with waiting:
      op = graph._create_op_internal(  # pylint: disable=protected-access
          op_type, inputs, name=name, attrs=attrs, op_def=op_def_proto)
  op._original_op = _original_op(graph)  # pylint: disable=protected-access
  return op


def create_op_bare(graph, op_type, inputs, attrs, name):
  """One op by the lean path's C API calls, with no control inputs and no
  control-flow bookkeeping at all, whatever contexts are current or on the
  inputs: for v1 loop ops whose context the caller sets up itself, as TF
  does for the Enter of a loop invariant (`WhileContext.AddValue`)."""
  return _create_op_lean(graph, op_type, inputs, list(inputs), attrs, name,
                         None, (), False)


def _lean_path_applies(graph, inputs):
  """True when building the op needs none of what `_create_op_internal`
  adds to the C API calls: no input to capture from another graph, no v1
  control-flow context (cond/while frames) on the graph or any input."""
  if graph._control_flow_context is not None or getattr(  # pylint: disable=protected-access
      graph, "capture_by_value", False):
    return False
  for t in inputs:
    # (an eager tensor, to be captured, has no graph at all)
    if getattr(t, "graph", None) is not graph \
        or t.op._control_flow_context is not None:  # pylint: disable=protected-access
      return False
  return True


def _create_op_lean(graph, op_type, inputs, grouped, attrs, name,
                    wait_for=None, control_inputs=None,
                    in_control_scopes=True):
  """`Graph._create_op_internal` minus its NodeDef round trip, name and
  size validation, OpDef lookup and input regrouping: the same C API calls
  (with the creation stack trace), then TF's own `_create_op_from_tf_operation`
  for the Python Operation, devices, colocation and attribute scopes.
  `control_inputs`, when given, replaces those of the graph's control
  dependency scopes (the caller has computed them); without
  `in_control_scopes`, the op is built as if outside those scopes."""
  graph._check_not_finalized()  # pylint: disable=protected-access
  placement = _lean_placement(graph, in_control_scopes)
  if name is None:
    name = op_type
  name = (tf_ops.name_from_scope_name(name) if name[-1] == "/"
          else graph.unique_name(name))
  if control_inputs is None:
    if placement is not None and in_control_scopes:
      control_inputs = ()  # (`_lean_placement` found no control scope)
    else:
      control_inputs = graph._control_dependencies_for_inputs(  # pylint: disable=protected-access
          {t.op for t in inputs}) if graph._control_dependencies_stack else ()  # pylint: disable=protected-access
  if graph in _mutating.graphs:  # the gradient call holds the lock
    return _finish_op_lean(graph, op_type, name, grouped, control_inputs,
                           wait_for, attrs, placement)
  with graph._mutation_lock():  # pylint: disable=protected-access
    return _finish_op_lean(graph, op_type, name, grouped, control_inputs,
                           wait_for, attrs, placement)


def _finish_op_lean(graph, op_type, name, grouped, control_inputs, wait_for,
                    attrs, placement):
  """The C API calls and the Python Operation of `_create_op_lean`."""
  if _held.graph is graph:
    desc = _c_api.TF_NewOperation(_held.c_graph, op_type, name)
  else:
    with graph._c_graph.get() as c_graph:  # pylint: disable=protected-access
      desc = _c_api.TF_NewOperation(c_graph, op_type, name)
  for value in grouped:
    if isinstance(value, list):
      _c_api.TF_AddInputList(desc, [t._as_tf_output() for t in value])  # pylint: disable=protected-access
    else:
      _c_api.TF_AddInput(desc, value._as_tf_output())  # pylint: disable=protected-access
  for control in control_inputs:
    _c_api.TF_AddControlInput(desc, control._c_op)  # pylint: disable=protected-access
  if wait_for:
    for control in wait_for:
      if control not in control_inputs:
        _c_api.TF_AddControlInput(desc, control._c_op)  # pylint: disable=protected-access
  if attrs:
    for key, value in attrs.items():
      _c_api.TF_SetAttrValueProto(desc, key, _serialized(value))
  if placement is not None and placement[0] is not None:
    _c_api.TF_SetAttrValueProto(desc, "_class", placement[0])
    if placement[1]:
      _c_api.TF_SetDevice(desc, placement[1])
  try:
    c_op = _c_api.TF_FinishOperation(desc)
  except tf.errors.InvalidArgumentError as e:
    raise ValueError(e.message) from None  # as TF's own constructor does
  trace = _call_trace.trace
  _c_api.TF_SetOpStackTrace(c_op, trace if trace is not None
                            else _tf_stack.extract_stack(stacklevel=5))
  if placement is None:
    op = graph._create_op_from_tf_operation(c_op)  # pylint: disable=protected-access
  else:
    op = _wrap_c_op(graph, c_op, op_type, name, placement[2])
  # pylint: disable=protected-access
  # `_original_op(graph)`, inlined on this path run once per op
  op._original_op = (_original.op if _original.graph is graph
                     else graph._default_original_op)
  # pylint: enable=protected-access
  return op


# ----- lean op creation inside a v1 while-loop context -----

# Op types TF's `WhileContext.AddOp` treats specially (moved into another
# context, or given a control input from the pivot whatever their inputs):
# built by TF's constructor.
_LOOP_SPECIAL_TYPES = frozenset(["PartitionedCall", "StatefulPartitionedCall",
                                 "SymbolicGradient"])
# Built in a gradient loop from a value of its forward loop, these move to
# the forward loop (their small result is what the history keeps).
_MOVED_TO_FORWARD_LOOP = frozenset(["Shape", "Size", "Rank"])


def _lean_loop_context(graph, op_type, inputs):
  """The v1 `WhileContext` an op about to be built in `graph` would be
  added to, when `_create_op_in_loop` can do what `WhileContext.AddOp`
  does for it; else None (the op goes through TF's constructor). Checked
  on TF 2.16-2.21: `Operation._init` records the graph's current context
  on the op, `_control_flow_post_processing` validates the inputs' contexts
  and calls `AddOp`."""
  # pylint: disable=protected-access
  ctxt = graph._control_flow_context
  if (not isinstance(ctxt, v1_loops.WhileContext)
      or op_type in _LOOP_SPECIAL_TYPES or graph._is_function(op_type)
      or getattr(graph, "capture_by_value", False)):
    return None
  outer = ctxt
  while outer is not None:  # an XLA context keeps constants out of frames
    if outer.IsXLAContext():
      return None
    outer = outer.outer_context
  for t in inputs:
    if getattr(t, "graph", None) is not graph:
      return None
  return ctxt
  # pylint: enable=protected-access


class _InContext:
  """Stands for an op not yet built in `ctxt` when checking its inputs
  with `control_flow_util.CheckInputFromValidContext` (which reads only
  the op's context and type)."""

  def __init__(self, op_type, ctxt):
    self.type = op_type
    self._ctxt = ctxt

  def _get_control_flow_context(self):
    return self._ctxt


def _output_context(op):
  """`control_flow_util.GetOutputContext`: an Exit's outputs belong to the
  context around its loop."""
  ctxt = op._control_flow_context  # pylint: disable=protected-access
  if ctxt is not None and v1_loops.is_loop_exit(op):
    ctxt = ctxt.outer_context
  return ctxt


def _create_op_in_loop(graph, ctxt, op_type, inputs, grouped, attrs, name,
                       wait_for, use_control_dependencies=True):
  """The lean path for an op built in v1 while context `ctxt`, giving the
  graph TF's constructor gives: each input from another context is made
  valid first (`v1_loops.add_value`, i.e. `ctxt.AddValue`: entered into
  the frame once, or a forward value's history in a gradient loop; TF's
  own per-context value maps remember it), so the op is built with its
  final inputs instead of being
  rewired; an op without inputs, or reading only loop invariants, waits
  for the loop's pivot; its outputs join the context's values, are not
  fed or fetched, and outer contexts hear of it. Returns None (nothing
  built) when a control input comes from outside the loop, which TF turns
  into an Identity in the frame: TF's constructor does that."""
  # pylint: disable=protected-access
  control_inputs = list(graph._control_dependencies_for_inputs(
      {t.op for t in inputs}) if use_control_dependencies
                        and graph._control_dependencies_stack else ())
  if wait_for:
    control_inputs.extend(c for c in wait_for if c not in control_inputs)
  if op_type in _MOVED_TO_FORWARD_LOOP and ctxt.grad_state is not None:
    there = inputs[0].op._control_flow_context
    if (there is not None and there.GetWhileContext()
        is ctxt.grad_state.forward_context):
      op = _create_op_lean(graph, op_type, inputs, grouped, attrs, name,
                           None, control_inputs, use_control_dependencies)
      op._set_control_flow_context(there)
      there._AddOpInternal(op)  # as `WhileContext.AddOp` moves it
      return op
  for c in control_inputs:
    c_ctxt = _output_context(c)
    if c_ctxt is None or c_ctxt.GetWhileContext() is not ctxt:
      return None
  real, changed, free = [], False, not control_inputs
  for t in inputs:
    if _output_context(t.op) is not ctxt:
      v1_loops.check_input_context(_InContext(op_type, ctxt), t.op)
      entered = v1_loops.add_value(ctxt, t)
      changed = changed or entered is not t
      t = entered
    real.append(t)
    free = free and v1_loops.is_loop_constant_enter(t.op)
  if free:  # no input varies per iteration: wait for the pivot
    control_inputs.append(ctxt.GetControlPivot().op)
  if changed:
    flat = iter(real)
    grouped = [[next(flat) for _ in v] if isinstance(v, list) else next(flat)
               for v in grouped]
  op = _create_op_lean(graph, op_type, real, grouped, attrs, name, None,
                       control_inputs, use_control_dependencies)
  values = ctxt._values
  for t in op.outputs:
    values.add(t.name)
  if ctxt._outer_context is not None or not v1_loops.is_loop_exit(op):
    # (the Exits of an outermost loop stay feedable and fetchable)
    for t in op.outputs:
      graph.prevent_feeding(t)
    graph.prevent_fetching(op)
  if ctxt._outer_context is not None:
    ctxt._outer_context.AddInnerOp(op)
  return op
  # pylint: enable=protected-access


@contextlib.contextmanager
def colocated_with_tensor(t, ignore_existing=False):
  """`tf.compat.v1.colocate_with(t, ignore_existing)` for graph tensor `t`
  of the default graph: the device functions set aside (and, with
  `ignore_existing`, the colocation stack too) and `t`'s op pushed, as TF
  does, but as a `_ColocationTarget`, so that the loop machinery's ops
  built inside keep the lean path's placement (`_lean_placement`) instead
  of TF's per-op colocation helper. TF's own manager when anything else
  is on the colocation stack and `ignore_existing` is off."""
  # pylint: disable=protected-access
  graph = default_graph()
  if (getattr(t, "graph", None) is not graph or is_eager_tensor(t)
      or (not ignore_existing and graph._colocation_stack._stack)):
    with tf.compat.v1.colocate_with(t, ignore_existing=ignore_existing):
      yield
    return
  op = t.op
  devices = graph._device_function_stack
  graph._device_function_stack = traceable_stack.TraceableStack()
  if ignore_existing:
    colocations = graph._colocation_stack
    graph._colocation_stack = traceable_stack.TraceableStack()
  graph._colocation_stack._stack.append(traceable_stack.TraceableObject(
      _ColocationTarget(op, lambda: private_attrs(op))))
  try:
    yield
  finally:
    graph._device_function_stack = devices
    graph._colocation_stack.pop_obj()
    if ignore_existing:
      graph._colocation_stack = colocations
  # pylint: enable=protected-access


_NO_PLACEMENT = (None, None, {})


def _lean_placement(graph, in_control_scopes=True):
  """What TF's `_create_op_helper` would add to a new op, when that is only
  colocation under one `_ColocationTarget` (or nothing): then the `_class`
  attribute and device are set in the op description and the Python
  Operation is made by `_wrap_c_op`. None when anything else applies
  (attribute scopes, kernel labels, gradient override maps, control
  dependencies, device functions, containers, other colocation). Control
  dependency scopes count only `in_control_scopes` (an op built outside
  them is not recorded in them, as under `control_dependencies(None)`)."""
  # pylint: disable=protected-access
  if graph._stack_state_is_thread_local:
    controls, devices, colocation = (graph._control_dependencies_stack,
                                     graph._device_function_stack,
                                     graph._colocation_stack)
  else:  # the graph's own stacks, which those properties return then
    controls = graph._graph_control_dependencies_stack
    devices = graph._graph_device_function_stack
    colocation = graph._graph_colocation_stack
  if (graph._attr_scope_map or graph._op_to_kernel_label_map
      or graph._gradient_override_map
      or (in_control_scopes and controls)
      or devices or graph._container):
    return None
  stack = colocation._stack
  if not stack:
    return _NO_PLACEMENT
  if len(stack) == 1 and isinstance(stack[0].obj, _ColocationTarget):
    return stack[0].obj.placement()
  return None
  # pylint: enable=protected-access


def _wrap_c_op(graph, c_op, op_type, name, colocation_code_locations):
  """The Python Operation for a finished `c_op` when `_lean_placement`
  applied: TF's `_create_op_from_tf_operation` with nothing left to do
  but record the name and the (empty) device and colocation metadata."""
  # pylint: disable=protected-access
  op = tf_ops.Operation._from_c_op(c_op=c_op, g=graph)
  name_key = name.lower()
  if name_key not in graph._names_in_use:
    graph._names_in_use[name_key] = 1
  op._gradient_function = graph._gradient_function_map.get(op_type)
  op._device_code_locations = []
  op._colocation_code_locations = colocation_code_locations
  return op
  # pylint: enable=protected-access


def import_nodes(graph, graph_def, input_map, control_map):
  """Adds the nodes of `graph_def` to `graph` in one
  `TF_GraphImportGraphDef` call, names unchanged, then a Python Operation
  for each, as the lean path makes them (`_wrap_c_op`): the cheapest way
  TF offers to add many ops that Python code can use afterwards.
  `input_map` maps "name:index" of tensors outside `graph_def` to tensors
  of `graph`, `control_map` op names to ops; `_class` attributes may name
  ops outside `graph_def`. Returns the Operations, in `graph_def`'s order.
  For measurements (tfgrad/cli/creation_floor.py): unlike TF's
  `import_graph_def`, it skips the Python-side device and colocation
  processing."""
  # pylint: disable=protected-access
  options = _c_api.TF_NewImportGraphDefOptions()
  try:
    _c_api.TF_ImportGraphDefOptionsSetPrefix(options, "")
    _c_api.TF_ImportGraphDefOptionsSetValidateColocationConstraints(
        options, False)
    for key, tensor in input_map.items():
      name, index = key.rsplit(":", 1)
      _c_api.TF_ImportGraphDefOptionsAddInputMapping(
          options, name, int(index), tensor._as_tf_output())
    for name, op in control_map.items():
      _c_api.TF_ImportGraphDefOptionsRemapControlDependency(
          options, name, op._c_op)
    for node in graph_def.node:
      _c_api.TF_ImportGraphDefOptionsAddReturnOperation(options, node.name)
    with c_api_util.tf_buffer(graph_def.SerializeToString()) as buffer, \
        graph._mutation_lock(), graph._c_graph.get() as c_graph:
      results = _c_api.TF_GraphImportGraphDefWithResults(
          c_graph, buffer, options)
      try:
        c_ops = _c_api.TF_ImportGraphDefResultsReturnOperations(results)
      finally:
        _c_api.TF_DeleteImportGraphDefResults(results)
      return [_wrap_c_op(graph, c_op, node.op, node.name, {})
              for node, c_op in zip(graph_def.node, c_ops)]
  finally:
    _c_api.TF_DeleteImportGraphDefOptions(options)
  # pylint: enable=protected-access


def has_control_dependencies(graph):
  return bool(graph._control_dependencies_stack)  # pylint: disable=protected-access


def control_flow_context(graph):
  return graph._get_control_flow_context()  # pylint: disable=protected-access


def colocation_device(graph):
  """The device of what ops created now are colocated with (innermost
  colocation scope: a forward op or its `_ColocationTarget`), or None when
  there is no colocation scope."""
  stack = graph._colocation_stack._stack  # pylint: disable=protected-access
  return stack[-1].obj.device if stack else None


@contextlib.contextmanager
def no_colocation(graph, device=None):
  """Ops created here are colocated with nothing; they get `device` when
  given, else the devices of the enclosing scopes (unlike
  `colocate_with(None, ignore_existing=True)`, which drops them)."""
  saved = graph._colocation_stack  # pylint: disable=protected-access
  graph._colocation_stack = traceable_stack.TraceableStack()  # pylint: disable=protected-access
  try:
    if device:
      with graph.device(device):
        yield
    else:
      yield
  finally:
    graph._colocation_stack = saved  # pylint: disable=protected-access


# ----- op types TF's engine treats specially -----

def is_placeholder(op):
  """Function-graph inputs and captures are Placeholder ops."""
  return op.type == "Placeholder"


def is_identity_n(op):
  """IdentityN: TF's `optimize_identity_n` leaves its missing output
  gradients as None (tf.custom_gradient and function gradients rely on it)."""
  return op.type == "IdentityN"


def rule_may_return_fewer_grads(op):
  """TF's While rules return gradients for the loop-carried inputs only."""
  return op.type in ("While", "StatelessWhile")


# ----- function call ops -----

def is_partitioned_call(op):
  return op.type in ("PartitionedCall", "StatefulPartitionedCall")


def is_function_call(op, src_graph):
  """Call of a graph function (legacy Defun calls use the function name as
  the op type)."""
  return is_partitioned_call(op) or src_graph._is_function(op.type)  # pylint: disable=protected-access


def function_definition(op, src_graph):
  """The function a call op calls, searched through enclosing graphs."""
  if is_partitioned_call(op):
    func = _registered_function(src_graph, op.get_attr("f").name)
  else:
    func = src_graph._get_function(op.type)  # pylint: disable=protected-access
  return getattr(op, "__defun", func)


def symbolic_gradient(op, out_grads):
  """Gradient of a function call by TF's SymbolicGradient runtime op."""
  f = attr_value_pb2.NameAttrList()
  f.name = op.get_attr("f").name if is_partitioned_call(op) else op.type
  for key, value in op.node_def.attr.items():
    f.attr[key].CopyFrom(value)
  zeros_dtypes = [default_gradient.get_zeros_dtype(t) for t in op.inputs]
  return gen_functional_ops.symbolic_gradient(
      input=list(op.inputs) + list(out_grads), Tout=zeros_dtypes, f=f)


# ----- v1 (graph-rewriting) control flow -----

_V1_LOOP_FRAME_TYPES = frozenset(["Enter", "RefEnter", "Exit", "RefExit"])


def has_v1_control_flow(ops_):
  """True if any op belongs to a v1 while loop (Enter/Exit frames)."""
  return any(op.type in _V1_LOOP_FRAME_TYPES for op in ops_)


# ----- argument conversion (the exact conversions tf.gradients applies) -----

from tensorflow.python.framework import composite_tensor  # pylint: disable=g-import-not-at-top
from tensorflow.python.framework import composite_tensor_gradient  # pylint: disable=g-import-not-at-top
from tensorflow.python.framework import indexed_slices  # pylint: disable=g-import-not-at-top
from tensorflow.python.ops import gradients_util  # pylint: disable=g-import-not-at-top
from tensorflow.python.util import variable_utils  # pylint: disable=g-import-not-at-top

# TF's own implementation, kept before any `tfgrad.install()` replaces it.
ORIGINAL_GRADIENTS_HELPER = gradients_util._GradientsHelper  # pylint: disable=protected-access


def variables_to_tensors(values):
  """`values` with resource variables (also inside composites) read as
  tensors; a list of plain tensors is returned as a new list at once
  (TF's `nest.map_structure` costs about an op's worth per call)."""
  if all(isinstance(v, tf.Tensor) for v in values):
    return list(values)
  return variable_utils.convert_variables_to_tensors(values)


def any_composite(values):
  return any(isinstance(v, composite_tensor.CompositeTensor) for v in values)


def flatten_composites(values):
  return composite_tensor_gradient.get_flat_tensors_for_gradients(values)


def unflatten_composites(values, flat_grads):
  return composite_tensor_gradient.replace_flat_tensors_for_gradients(
      values, flat_grads)


def to_tensors_or_slices(values, name, as_ref=False):
  """`values` converted to Tensors or IndexedSlices (None stays None); a
  list of graph tensors (and Nones) is returned as a new list at once,
  which is what TF's conversion returns for it, minus its dispatch."""
  if all(v is None or isinstance(v, tf_ops.SymbolicTensor) for v in values):
    return list(values)
  if as_ref:
    return indexed_slices.internal_convert_n_to_tensor_or_indexed_slices(
        values, name=name, as_ref=True)
  return indexed_slices.convert_n_to_tensor_or_indexed_slices(values, name=name)


# ----- TF's gradient builders for control flow v2 and function calls -----
#
# TF's gradients of If/Case ops and of calls of graph functions build
# gradient function graphs and differentiate the bodies by calling
# `gradients_util._GradientsHelper`, a module attribute. tfgrad calls these
# builders through private views of their modules in which that name
# resolves to tfgrad: the builders' code runs unchanged, TF's modules are never modified, so other threads
# and stock `tf.gradients` see TF exactly as it is.

import types  # pylint: disable=g-import-not-at-top,wrong-import-order

from tensorflow.python.eager.polymorphic_function import concrete_function  # pylint: disable=g-import-not-at-top
from tensorflow.python.ops import cond_v2  # pylint: disable=g-import-not-at-top
from tensorflow.python.ops import while_v2  # pylint: disable=g-import-not-at-top


class _Rebound:
  """A module as seen with some of its attributes replaced."""

  def __init__(self, module, **replacements):
    self._module = module
    self.__dict__.update(replacements)

  def __getattr__(self, name):
    return getattr(self._module, name)


def _copy_function(fn, namespace):
  """`fn` with `namespace` as its globals (same code, defaults, closure)."""
  copy = types.FunctionType(fn.__code__, namespace, fn.__name__,
                            fn.__defaults__, fn.__closure__)
  copy.__kwdefaults__ = fn.__kwdefaults__
  copy.__qualname__ = fn.__qualname__
  copy.__dict__.update(fn.__dict__)
  return copy


class _ModuleView:
  """The functions of a TF module as they behave when some of the
  module's global names are bound to other objects.

  Each function defined in the module is copied with a namespace holding
  the replacements, so calls among the module's functions stay inside the
  view; methods of the module's classes are reached through `bound`,
  which copies the class's methods into a subclass the same way. Built
  once per module and never changed after, so threads share it safely."""

  def __init__(self, module, **replacements):
    self._own = vars(module)
    self._namespace = dict(self._own)
    self._namespace.update(replacements)
    for name, value in self._own.items():
      if isinstance(value, types.FunctionType) \
          and value.__globals__ is self._own:
        self._namespace[name] = _copy_function(value, self._namespace)
    self._classes = {}

  def function(self, fn):
    """The view's copy of module function `fn`."""
    copy = self._namespace.get(fn.__name__)
    return copy if getattr(copy, "__code__", None) is fn.__code__ else fn

  def _class(self, cls):
    view_cls = self._classes.get(cls)
    if view_cls is None:
      methods = {k: _copy_function(v, self._namespace)
                 for k, v in vars(cls).items()
                 if isinstance(v, types.FunctionType)
                 and v.__globals__ is self._own}
      view_cls = self._classes.setdefault(
          cls, type(cls.__name__, (cls,), methods))
    return view_cls

  def bound(self, method):
    """`method` (bound to an instance of one of the module's classes) as
    the view runs it: the same instance state, the view's methods."""
    instance = method.__self__
    twin = object.__new__(self._class(type(instance)))
    twin.__dict__ = instance.__dict__  # the same state, not a copy of it
    return getattr(twin, method.__name__)


def _tfgrad_helper(*args, **kwargs):
  """tfgrad's engine with `_GradientsHelper`'s signature, for the views
  (strictness comes from the outer call, through `api.strict_mode`)."""
  from tfgrad import api  # pylint: disable=g-import-not-at-top
  return api.gradients_helper(*args, **kwargs)


_ROUTED_GRADIENTS_UTIL = _Rebound(gradients_util,
                                  _GradientsHelper=_tfgrad_helper)
_views = {}
_views_lock = threading.Lock()


def _view(module):
  """The view of `module` in which TF's builders call tfgrad."""
  view = _views.get(module)
  if view is None:
    replacements = {"gradients_util": _ROUTED_GRADIENTS_UTIL}
    with _views_lock:
      view = _views.setdefault(module, _ModuleView(module, **replacements))
  return view


_ROUTED_MODULES = {m.__name__: m for m in (cond_v2, concrete_function)}


# TF's builders edit the forward graph they differentiate (an If op gets
# intermediate outputs, a function call is rewritten to output
# intermediates, a function graph gains outputs), which graphs and
# functions shared by several callers would see half-done: tfgrad runs one
# builder at a time (re-entrant, for nested conds and calls).
_builders_lock = threading.RLock()


def routed_through_tfgrad(rule):
  """`rule` as tfgrad runs it: a TF gradient function of control flow v2
  or of a graph-function call, taken from a view whose bodies are
  differentiated by tfgrad and run one at a time; any other rule as it
  is."""
  fn = getattr(rule, "__func__", rule)
  module = _ROUTED_MODULES.get(getattr(fn, "__module__", None))
  if module is None or not isinstance(fn, types.FunctionType):
    return rule
  view = _view(module)
  routed = view.bound(rule) if fn is not rule else view.function(fn)

  def run_builder(*args, **kwargs):
    with _builders_lock:
      return routed(*args, **kwargs)
  run_builder.__name__ = fn.__name__
  return run_builder


def update_input(op, index, tensor):
  """Graph edit: `op`'s input `index` becomes `tensor` (an op this call
  created, not yet seen by any other caller)."""
  op._update_input(index, tensor)  # pylint: disable=protected-access


def while_body_graph(op):
  """The FuncGraph of a While op's body (TF keeps it cached on the op)."""
  return while_v2._get_graph(op, "body", "_body_graph")  # pylint: disable=protected-access


def while_original_output_count(op):
  """Outputs of a While op that are loop variables, as opposed to the
  accumulators a gradient has added to it since."""
  try:
    return op.get_attr("_num_original_outputs")
  except ValueError:
    return len(op.outputs)


def copy_op(graph, op, inputs, name, attrs=None):
  """A copy of `op` reading `inputs`: same type, attributes (colocation
  `_class` included; `attrs` instead when given) and device, named `name`
  from the graph's root name scope (made unique), built by
  `Graph._create_op_internal`, so the graph's control-dependency stack
  applies (TF 2.16-2.21)."""
  if attrs is None:
    attrs = dict(op.node_def.attr.items())
  saved = graph._name_stack  # pylint: disable=protected-access
  graph._name_stack = ""  # pylint: disable=protected-access
  try:
    with graph.device(op.device) if op.device else contextlib.nullcontext():
      return graph._create_op_internal(  # pylint: disable=protected-access
          op.type, inputs, dtypes=[o.dtype for o in op.outputs], name=name,
          attrs=attrs, op_def=op.op_def)
  finally:
    graph._name_stack = saved  # pylint: disable=protected-access


# ----- gradient loops of control flow v2 While ops (tfgrad/while_builder) -----
#
# tfgrad builds a While op's gradient loop itself: FuncGraphs for its cond
# and body, TensorList accumulators added to the forward loop, and the
# forward op rewritten to output them. What that needs of TF beyond its
# public API is here (checked on TF 2.16-2.21).

from tensorflow.python.framework import auto_control_deps_utils as _acd  # pylint: disable=g-import-not-at-top
from tensorflow.python.ops import control_flow_util_v2 as _cf_util  # pylint: disable=g-import-not-at-top
from tensorflow.python.ops import handle_data_util as _handle_data  # pylint: disable=g-import-not-at-top

WhileBodyFuncGraph = _cf_util.WhileBodyFuncGraph
WhileCondFuncGraph = _cf_util.WhileCondFuncGraph
clear_control_inputs = _cf_util.clear_control_inputs
grad_fn_name = _cf_util.unique_grad_fn_name


def in_xla_context(graph):
  """True if `graph` or a graph it is nested in builds for XLA (then TF
  keeps shape queries in the gradient body: a popped shape is no
  compile-time constant)."""
  from tensorflow.python.ops import control_flow_util  # pylint: disable=g-import-not-at-top
  return control_flow_util.GraphOrParentsInXlaContext(graph)


def is_trainable_dtype(dtype):
  """TF's IsTrainable for a dtype (variants and resources included)."""
  return backprop_util.IsTrainable(dtype)


def copy_handle_data(src, dst):
  """Copies a resource's or TensorList's handle data (dtype and shape of
  what it holds) from tensor `src` to `dst`."""
  _handle_data.copy_handle_data(src, dst)




def default_grad_shape_and_dtype(t):
  """Shape and dtype of the zeros gradient of `t` (a resource's variable's)."""
  return default_gradient.shape_and_dtype(t)


def is_stateful(op):
  return op._is_stateful  # pylint: disable=protected-access


def while_cond_graph(op):
  """The FuncGraph of a While op's cond (TF keeps it cached on the op)."""
  return while_v2._get_graph(op, "cond", "_cond_graph")  # pylint: disable=protected-access


def resource_input_index(body, t):
  """Index of the body input a resource tensor of `body` comes from."""
  nodes = {op.name: op.node_def for op in body.get_operations()}
  return _cf_util.resource_input_index(
      t.name, [i.name for i in body.inputs], nodes,
      body._functions)  # pylint: disable=protected-access


def library_node_counts(graph):
  """{function name: number of nodes} for the functions in `graph`'s
  library (those its ops and functions call, registered in it), read
  from its GraphDef only when it holds any."""
  if not graph._functions:  # pylint: disable=protected-access
    return {}
  return {f.signature.name: len(f.node_def)
          for f in graph.as_graph_def().library.function}


def fill_graph_function(graph):
  """Registers `graph` as a function of its outer graph; its name."""
  return register_function(graph)


def add_while_accumulators(op, cond, body, new_inputs, new_outputs):
  """Graph edit: While `op` (whose `cond`/`body` FuncGraphs have gained
  `new_inputs` as captures and `new_outputs` as outputs) takes the new
  inputs and gives the new outputs, as TF's own While gradient does. A
  `LessCond` cond takes the new inputs here."""
  # Function names are global (the eager context's library holds every
  # graph's functions): a rewritten function gets a name no other
  # definition has, also when the loop came from a GraphDef imported
  # more than once (stock's "_rewritten" suffix collides there).
  for graph in (cond, body):
    graph.name = f"{graph.name.split('_rewritten')[0]}_rewritten_{tf_ops.uid()}"
  with mutation_lock(op.graph):
    if isinstance(cond, LessCond):
      cond.loop_vars.extend(new_inputs)
    op._set_func_attr("cond", _register_loop_function(op.graph, cond))  # pylint: disable=protected-access
    op._set_func_attr("body", fill_graph_function(body))  # pylint: disable=protected-access
    op._set_type_list_attr("T", body.output_types)  # pylint: disable=protected-access
    op._set_shape_list_attr("output_shapes", body.output_shapes)  # pylint: disable=protected-access
    op._add_while_inputs(new_inputs)  # pylint: disable=protected-access
    op._add_outputs([t.dtype for t in new_outputs],  # pylint: disable=protected-access
                    [t.shape for t in new_outputs])
  for src, dst in zip(new_outputs, op.outputs[-len(new_outputs):]):
    _handle_data.copy_handle_data(src, dst)


def set_while_original_outputs(op, count):
  """Marks the first `count` outputs of `op` as differentiable loop
  variables (the rest are accumulators of the loop's intermediates)."""
  op._set_attr("_num_original_outputs",  # pylint: disable=protected-access
               attr_value_pb2.AttrValue(i=count))


class LessCond:
  """The cond of a loop tfgrad builds, `loop_vars[i] < loop_vars[j]`,
  standing in for its FuncGraph: that graph would hold one placeholder
  per loop variable (each about an op's creation) to feed one Less, and
  converting it to a function costs as much again. `build_while`
  registers it from a FunctionDef written directly (`_less_cond_def`);
  `add_while_accumulators` registers it again with the new inputs.
  `loop_vars` are tensors of the graph the While goes in, giving the
  arguments' types, shapes and handle data."""

  def __init__(self, name, loop_vars, i, j):
    self.name = name
    self.loop_vars = list(loop_vars)
    self.outer_graph = None
    self._compared = (i, j)

  def register(self, graph):
    """Adds the function to `graph` (and the eager context); its name."""
    i, j = self._compared
    fdef = _less_cond_def(self.name, self.loop_vars, i, j)
    context = _tf_context.context()
    context.add_function_def(fdef)
    x, y = self.loop_vars[i], self.loop_vars[j]
    out = _tensor_spec(tf.broadcast_static_shape(x.shape, y.shape)._dims,  # pylint: disable=protected-access
                       tf.bool)
    function_type = _function_type_lib.FunctionType(
        [_parameter(k, t) for k, t in enumerate(self.loop_vars)], {},
        return_annotation=_default_types.Tuple(out))
    graph._add_function_recursive(_atomic_function.AtomicFunction(  # pylint: disable=protected-access
        self.name, context, function_type))
    return self.name


def _less_cond_def(name, loop_vars, i, j):
  """The FunctionDef `TF_GraphToFunction` gives a cond FuncGraph holding
  one placeholder per loop variable and Less(i-th, j-th) as its output,
  up to the names of arguments and output: each non-resource argument
  records its static shape (`_output_shapes`, read by `_Arg`'s shape
  function), as that conversion does (TF 2.16-2.21)."""
  fdef = _function_pb2.FunctionDef()
  signature = fdef.signature
  signature.name = name
  for k, t in enumerate(loop_vars):
    arg = signature.input_arg.add()
    arg.name = f"arg_{k}"
    arg.type = t.dtype.as_datatype_enum
    if t.dtype != tf.resource:
      fdef.arg_attr[k].attr["_output_shapes"].CopyFrom(
          _output_shapes_attr(t.shape._dims))  # pylint: disable=protected-access
  out = signature.output_arg.add()
  out.name = "less"
  out.type = tf.bool.as_datatype_enum
  node = fdef.node_def.add()
  node.name = "Less"
  node.op = "Less"
  node.input.extend([f"arg_{i}", f"arg_{j}"])
  node.attr["T"].type = loop_vars[i].dtype.as_datatype_enum
  fdef.ret["less"] = "Less:z:0"
  return fdef


@functools.lru_cache(maxsize=1024)
def _output_shapes_attr(dims):
  """The `_output_shapes` AttrValue of an argument of static shape `dims`
  (made once per shape; shared, so never mutated: callers copy it)."""
  return attr_value(list=dict(shape=[tf.TensorShape(dims).as_proto()]))


def _register_loop_function(graph, func):
  """Registers a loop's cond or body `func` (a FuncGraph, or a `LessCond`
  for `graph`, the graph of the While op); its name."""
  if isinstance(func, LessCond):
    return func.register(graph)
  return fill_graph_function(func)


def _loop_function_graphs(cond, body):
  """Of a loop's cond and body, those that are FuncGraphs (with ops)."""
  return (body,) if isinstance(cond, LessCond) else (cond, body)


def build_while(loop_vars, cond, body, parallel_iterations, name,
                registered=False, like=None):
  """A While (StatelessWhile when no op of cond or body is stateful) over
  `loop_vars` running FuncGraphs `cond` (or a `LessCond`) and `body`; its
  outputs.
  `registered`: the functions are in the graph's library already (another
  While op of an enclosing graph runs them), so they are not added again.
  `like`: a While op already running these functions over loop variables
  of the same types, whose op type and read-only resource inputs are
  taken rather than found again by walking both functions."""
  if like is not None:
    op_type = like.type
  else:
    stateful = any(o._is_stateful  # pylint: disable=protected-access
                   for g in _loop_function_graphs(cond, body)
                   for o in g.get_operations())
    op_type = "While" if stateful else "StatelessWhile"
  graph = default_graph()
  name_of = ((lambda g: g.name) if registered
             else functools.partial(_register_loop_function, graph))
  attrs = {
      "T": attr_value(list=dict(type=[t.dtype.as_datatype_enum
                                      for t in loop_vars])),
      "cond": function_attr(name_of(cond)),
      "body": function_attr(name_of(body)),
      "output_shapes": attr_value(list=dict(
          shape=[t.shape.as_proto() for t in body.outputs])),
      "parallel_iterations": attr_value(i=parallel_iterations)}
  loop_vars = list(loop_vars)
  op = create_op(graph, op_type, loop_vars, attrs, op_def(op_type),
                 name, [loop_vars])
  outputs = op.outputs
  for src, dst in zip(body.outputs, outputs):
    _handle_data.copy_handle_data(src, dst)
  _cf_util.maybe_set_lowering_attr(op)
  _cf_util.maybe_propagate_compile_time_consts_in_xla(op)
  if like is not None:
    read_only = like.get_attr(_acd.READ_ONLY_RESOURCE_INPUTS_ATTR)
  else:
    read_only = set(range(len(op.inputs)))
    for g in _loop_function_graphs(cond, body):
      read_only &= set(_acd.get_read_only_resource_input_indices_graph(g))
  tf_ops.set_int_list_attr(op, _acd.READ_ONLY_RESOURCE_INPUTS_ATTR,
                           sorted(read_only))
  set_while_original_outputs(op, len(body.outputs))
  cond.outer_graph = body.outer_graph = op.graph
  return op, outputs


# ----- tfgrad's own builders for If/Case and graph-function calls -----
#
# What `tfgrad/functional.py` and `ops/cond_grad.py` need from TF to build
# gradient function graphs and to rewrite a forward If/Case/call op so it
# outputs the intermediates a gradient reads (TF 2.16-2.21).

from tensorflow.python.eager import context as _tf_context  # pylint: disable=g-import-not-at-top
from tensorflow.python.eager.polymorphic_function import atomic_function as _atomic_function  # pylint: disable=g-import-not-at-top
from tensorflow.python.eager.polymorphic_function import transform as _transform  # pylint: disable=g-import-not-at-top
from tensorflow.core.function.polymorphism import function_type as _function_type_lib  # pylint: disable=g-import-not-at-top
from tensorflow.python.framework import cpp_shape_inference_pb2 as _shape_inference  # pylint: disable=g-import-not-at-top
from tensorflow.core.function.trace_type import default_types as _default_types  # pylint: disable=g-import-not-at-top
from tensorflow.python.framework import func_graph as _func_graph  # pylint: disable=g-import-not-at-top
from tensorflow.python.framework import tensor_util as _tensor_util  # pylint: disable=g-import-not-at-top
from tensorflow.python.framework import dtypes as _dtypes  # pylint: disable=g-import-not-at-top
from tensorflow.python.ops import control_flow_util as _cf_util_v1  # pylint: disable=g-import-not-at-top
from tensorflow.python.ops import control_flow_util_v2 as _cf_util  # pylint: disable=g-import-not-at-top
from tensorflow.python.ops import math_ops as _math_ops  # pylint: disable=g-import-not-at-top
from tensorflow.python.framework import function_def_to_graph as _function_def_to_graph  # pylint: disable=g-import-not-at-top
from tensorflow.python.eager.polymorphic_function import attributes as _attributes  # pylint: disable=g-import-not-at-top


def branch_graphs(op):
  """The FuncGraphs of an If's (then, else) or a Case's branches, their
  inputs standing for `op.inputs[1:]` (TF's `cond_v2.get_func_graphs`:
  cached on ops cond_v2 built, rebuilt from the function library else)."""
  return cond_v2.get_func_graphs(op)


def called_graph(op):
  """A FuncGraph of the function a PartitionedCall op calls now (built
  from the function definition, so edits to it are this op's own)."""
  return _cf_util.get_func_graph(op, [t.shape for t in op.inputs],
                                 op.get_attr("f").name)


def _hooked_graph_class(base):

  class _Hooked(base):
    """A FuncGraph whose captures of tensors of one forward body go
    through `hook(tensor, capture)`, which returns what stands for the
    tensor here (`capture(t)` captures `t` the usual way)."""

    def __init__(self, name, body, hook, capture):
      super().__init__(name, collections=default_graph()._collections)  # pylint: disable=protected-access
      self._tfgrad_body, self._tfgrad_hook = body, hook
      self._tfgrad_capture = capture

    def _capture_helper(self, tensor, name):
      if is_eager_tensor(tensor):
        return super()._capture_helper(tensor, name)
      if tensor.graph is not self._tfgrad_body:
        return self._tfgrad_capture(self, tensor)
      return self._tfgrad_hook(
          tensor, lambda t: self._tfgrad_capture(self, t))

    def captures_before_lean_op(self, unused_op_type):
      """Yes: captures here are plain (see `_captured_first`)."""
      return True
  return _Hooked


_HookedCondGraph = _hooked_graph_class(_cf_util.CondBranchFuncGraph)
_HookedGraph = _hooked_graph_class(_func_graph.FuncGraph)


def hooked_function_graph(name, body, hook, in_cond, capture):
  """A new function graph for a gradient of `body` (see `_Hooked`); a
  cond branch graph when `in_cond` (TF's nested control flow asks).
  `capture(graph, tensor)` makes its placeholders for outer graph tensors."""
  return (_HookedCondGraph if in_cond else _HookedGraph)(name, body, hook,
                                                         capture)


def trace_into(func_graph, fn):
  """Runs `fn()` (which returns nothing) with `func_graph` as default
  graph; what `func_graph_from_py_func` leaves in a function graph for
  such a `fn`, without its signature building: stateful ops run in the
  order they were made and become control outputs (`order_stateful`).
  The new graph's mutation lock is held throughout, not taken per op (no
  Session runs a graph under construction)."""
  with func_graph.as_default(), mutation_lock(func_graph):
    fn()
  func_graph.structured_outputs = []
  func_graph.control_outputs.extend(order_stateful(func_graph))


def order_stateful(func_graph):
  """Chains the stateful ops of the new function graph `func_graph` in
  the order they were made (each gets a control input on the one before;
  `Operation._add_control_input`, TF 2.16-2.21) and returns them, to be
  its control outputs. TF traces gradient functions with automatic
  control dependencies, which run side effects (a custom gradient that
  prints or assigns) in program order; ordering every stateful op, not
  just those sharing a resource, costs one edge per stateful op, and
  gradient graphs hold few of them. Creation order is topological, so
  no edge makes a cycle."""
  stateful = [o for o in func_graph.get_operations() if o._is_stateful]  # pylint: disable=protected-access
  for before, op in zip(stateful, stateful[1:]):
    op._add_control_input(before)  # pylint: disable=protected-access
  return stateful


def existing_capture(func_graph, tensor):
  """The placeholder by which `func_graph` captured outer `tensor`, or None."""
  return func_graph._function_captures.by_val_internal.get(id(tensor))  # pylint: disable=protected-access


def capture_placeholder_attrs(tensor):
  """(op name, attributes) of the Placeholder `FuncGraph.capture` makes for
  graph tensor `tensor`: named after the tensor's op, which it records as
  `_user_specified_name` (TF's `TensorSpec.placeholder_value`)."""
  name = tensor.op.name
  dtype, shape = _placeholder_type_attrs(
      tensor.shape._dims, tensor.dtype.base_dtype.as_datatype_enum)  # pylint: disable=protected-access
  return name, {
      "dtype": dtype, "shape": shape,
      "_user_specified_name": attr_value(s=tf.compat.as_bytes(name))}


@functools.lru_cache(maxsize=1024)
def _placeholder_type_attrs(dims, dtype_enum):
  """The `dtype` and `shape` AttrValues of a placeholder, made once per
  shape and dtype (a shape proto costs about a third of a capture's
  attributes); shared, so never mutated (ops copy them)."""
  return (attr_value(type=dtype_enum),
          attr_value(shape=tf.TensorShape(dims).as_proto()))


def record_capture(func_graph, tensor, placeholder):
  """Registers `placeholder` (made by `capture_placeholder_attrs`' recipe)
  as `func_graph`'s capture of outer `tensor`, as `FuncGraph.capture`
  does: handle data copied, an entry in the graph's captures (with the
  tensor's trace type), an input of the graph, recorded on any tape."""
  _handle_data.copy_handle_data(tensor, placeholder)
  func_graph._function_captures.add_or_replace(  # pylint: disable=protected-access
      key=id(tensor), external=tensor, internal=placeholder,
      tracetype=_trace_type(tensor), is_by_ref=False)
  func_graph.inputs.append(placeholder)
  placeholder._record_tape(tensor)  # pylint: disable=protected-access


def _captured_first(graph, op_type, inputs, grouped):
  """For an op of one of tfgrad's own function graphs (those with a
  `captures_before_lean_op(op_type)` method saying yes) whose inputs
  include outer tensors: (inputs, grouped) with each outer tensor replaced
  by the graph's capture of it (`graph.capture`, as `FuncGraph`'s
  constructor does first), so the op itself can take the lean path.
  Unchanged for any other graph, or with a v1 control-flow context."""
  wants = getattr(graph, "captures_before_lean_op", None)
  if (wants is None or graph._control_flow_context is not None  # pylint: disable=protected-access
      or graph.capture_by_value or not wants(op_type)):
    return inputs, grouped

  def inside(t):
    return t if getattr(t, "graph", None) is graph else graph.capture(t)
  return ([inside(t) for t in inputs],
          [[inside(t) for t in v] if isinstance(v, list) else inside(v)
           for v in grouped])


def set_function_inputs(func_graph, outer, inner):
  """`func_graph`'s arguments become `inner`, fed from `outer`."""
  func_graph.inputs = list(inner)
  func_graph.function_captures.reset_captures(outer, func_graph.inputs)


def register_function(func_graph):
  """Adds `func_graph` as a function to its outer graph; returns the name
  (TF's `create_new_tf_function`, with the function type from
  `_function_type`)."""
  _transform.apply_func_graph_transforms(func_graph)
  function = _atomic_function.from_func_graph(
      func_graph.name, func_graph, {}, function_type=_function_type(func_graph))
  func_graph.outer_graph._add_function_recursive(function)  # pylint: disable=protected-access
  return func_graph.name


def _trace_type(t):
  """TF's trace type of graph tensor `t`: what `trace_type.from_value`
  returns for it, without the protocol checks that make it cost about an
  op's worth of time. Beyond resources and variants (whose type carries
  their handle data) that is a TensorSpec of the shape and dtype
  (`Tensor.__tf_tracing_type__`), shared through `_tensor_spec`."""
  dtype = t.dtype
  if dtype == tf.resource or dtype == tf.variant:
    with t.graph._c_graph.get() as c_graph:  # pylint: disable=protected-access
      data = _c_api.GetHandleShapeAndType(c_graph, t._as_tf_output())  # pylint: disable=protected-access
    return _handle_tensor_spec(t.shape._dims, dtype.as_datatype_enum,  # pylint: disable=protected-access
                               bytes(data))
  return _tensor_spec(t.shape._dims, dtype)  # pylint: disable=protected-access


@functools.lru_cache(maxsize=1024)
def _handle_tensor_spec(dims, dtype_enum, handle_data):
  """The trace type of a resource or variant tensor of static shape `dims`
  whose serialized handle data (what it holds: `GetHandleShapeAndType`, as
  `Tensor.__tf_tracing_type__` reads it, TF 2.16-2.21) is `handle_data`:
  a TensorSpec whose dtype carries the parsed handle data. Made once per
  such triple of immutable values: parsing the proto and building the
  dtype and spec cost more than the C call, and a loop's functions take
  several TensorLists each."""
  parsed = _shape_inference.CppShapeInferenceResult.HandleData.FromString(
      handle_data)
  dtype = _dtypes.DType(dtype_enum,
                        _dtypes.HandleData(parsed) if parsed else None)
  return tf.TensorSpec(dims, dtype)


@functools.lru_cache(maxsize=1024)
def _tensor_spec(dims, dtype):
  """`tf.TensorSpec(dims, dtype)`, made once per shape and dtype (trace
  types are immutable values, compared by equality): building one costs
  about a tenth of an op's creation, and a function type needs one per
  argument and output."""
  return tf.TensorSpec(dims, dtype)


def _parameter(index, t):
  """The FunctionType parameter `derive_from_graph` gives argument `index`,
  graph tensor `t`."""
  return _shared_parameter(index, _trace_type(t))


def _new_parameter(index, trace_type):
  return _function_type_lib.Parameter(
      f"arg_{index}", _function_type_lib.Parameter.POSITIONAL_ONLY, False,
      trace_type)


@functools.lru_cache(maxsize=1024)
def _shared_parameter(index, trace_type):
  """`_new_parameter`, made once per index and trace type (both, and
  parameters, are immutable values)."""
  return _new_parameter(index, trace_type)


def _function_type(func_graph):
  """The FunctionType TF's `derive_from_graph` gives `func_graph` (inputs
  and outputs by their trace types, the captures' types), built from
  `_trace_type`."""
  # (what `function_type.from_structured_signature` makes of these types)
  parameters = [_parameter(i, t) for i, t in enumerate(func_graph.inputs)]
  return _function_type_lib.FunctionType(
      parameters, func_graph.function_captures.capture_types or {},
      return_annotation=_default_types.Tuple(
          *(_trace_type(t) for t in func_graph.outputs)))


def unique_grad_name(name):
  return _cf_util.unique_grad_fn_name(name)


def optionals_usable(graph):
  """False in an XLA context (XLA compiles no optionals) or with optionals
  switched off in gradients: there a cond's intermediates leave it
  unwrapped, as TF's rules output them (TF's `cond_v2._IfGrad` checks the
  same two conditions on the graph the gradient is built in; TF 2.16-2.21)."""
  return (_tf_context.optionals_in_gradients_enabled()
          and not _cf_util_v1.GraphOrParentsInXlaContext(graph))


def constant_value(t):
  """The value of a Const op's output (copied, not captured), else None."""
  if t.op.type != "Const":
    return None
  return _tensor_util.constant_value(t)


def resource_source(body, t):
  """The input of function graph `body` that resource tensor `t` in it
  comes from (handles are never created inside bodies)."""
  index = _cf_util.resource_input_index(
      t.name, [i.name for i in body.inputs],
      {o.name: o.node_def for o in body.get_operations()},
      body._functions)  # pylint: disable=protected-access
  return body.inputs[index]


def as_indexed_slices(t):
  return _math_ops._as_indexed_slices(t)  # pylint: disable=protected-access


def has_stateful_op(func_graph):
  return any(o._is_stateful for o in func_graph.get_operations())  # pylint: disable=protected-access


def zeros_like_input(t):
  """Zeros standing for a missing gradient of function input `t`
  (a resource handle gets its variable's shape and dtype)."""
  return default_gradient.zeros_like(t)


def rewrite_outputs(op, func_attrs, tout, output_shapes, added):
  """Points `op` at its rewritten branch or body functions (`func_attrs`:
  attribute name -> function name or list of names), sets its output
  types and shapes, and appends outputs for `added` (tensors of one
  branch, for their dtypes and shapes)."""
  # pylint: disable=protected-access
  for key, value in func_attrs.items():
    if isinstance(value, list):
      op._set_func_list_attr(key, value)
    else:
      op._set_func_attr(key, value)
  op._set_type_list_attr("Tout", tout)
  if output_shapes is not None:
    op._set_shape_list_attr("output_shapes", output_shapes)
  op._add_outputs([t.dtype for t in added], [t.shape for t in added])
  # pylint: enable=protected-access


def lowering_attr(op):
  """`op`'s `_lower_using_switch_merge`, or None when unset."""
  try:
    return op.get_attr("_lower_using_switch_merge")
  except ValueError:
    return None


def finish_functional_op(op, lowering=None):
  """What TF sets on an If/Case it builds: lowering to Switch/Merge
  (unless in XLA), XLA constant propagation, and no direct fetching of
  its outputs (fetch the Identity ops after it)."""
  _cf_util.maybe_set_lowering_attr(op, lowering)
  _cf_util.maybe_propagate_compile_time_consts_in_xla(op)
  op.graph.prevent_fetching(op)




def delayed_rewrite_source(fn):
  """(forward FuncGraph, function attributes) of the graph function whose
  call ops TF gives `fn`, its delayed-rewrite gradient function (TF's
  `_DelayedRewriteGradientFunctions`, TF 2.16-2.21), or None for any other
  gradient function. TF only ever appends to that graph's outputs, so a
  call op's outputs are a prefix of them."""
  owner = getattr(fn, "__self__", None)
  if not isinstance(owner, concrete_function._DelayedRewriteGradientFunctions):  # pylint: disable=protected-access
    return None
  attrs = dict(owner._attrs)  # pylint: disable=protected-access
  attrs.pop("_implements", None)  # the signature changes with new outputs
  return owner._func_graph, attrs  # pylint: disable=protected-access


def make_function(func_graph, name, attrs):
  """A function of `func_graph` named `name`, not yet in any graph."""
  return _atomic_function.from_func_graph(
      name, func_graph, attrs, function_type=_function_type(func_graph))


def function_names(attrs):
  """The functions named by the attribute map `attrs` (a NodeDef's, as
  `node_def.attr` or a FunctionDef node's `attr`): its `func` values and
  the entries of its `list(func)` values."""
  names = []
  for value in attrs.values():
    if value.HasField("func"):
      names.append(value.func.name)
    elif value.HasField("list"):
      names.extend(f.name for f in value.list.func)
  return names


def _registered_function(graph, name):
  """Function `name` as `graph` or the nearest graph it is nested in holds
  it (an AtomicFunction, or a v1 Defun's function), else None (the lookup
  `control_flow_util_v2.get_func_graph` makes; TF 2.16-2.21)."""
  while graph is not None:
    found = graph._get_function(name)  # pylint: disable=protected-access
    if found is not None:
      return found
    graph = getattr(graph, "outer_graph", None)
  return None


def function_def_of(graph, name):
  """The FunctionDef of function `name` as `graph` or a graph it is nested
  in holds it, else None."""
  found = _registered_function(graph, name)
  if found is None:
    return None
  definition = getattr(found, "cached_definition", None)
  return definition if definition is not None else found.definition


def function_graph_of(graph, name):
  """The FuncGraph function `name` (as `graph` or a graph it is nested in
  holds it) was made from, else None (a function from a definition)."""
  return getattr(_registered_function(graph, name), "graph", None)


def graph_from_definition(fdef, input_shapes=None):
  """A new FuncGraph running FunctionDef `fdef`, nested in the default
  graph (TF's `function_def_to_graph`), its inputs of `input_shapes` when
  given."""
  return _function_def_to_graph.function_def_to_graph(
      fdef, input_shapes=input_shapes)


def function_attrs(fdef):
  """The attributes of FunctionDef `fdef` a function made from a graph may
  carry (those TF's `from_func_graph` accepts), less `_implements`,
  which a function given new outputs no longer does."""
  allowed = _attributes.MONOMORPHIC_FUNCTION_ALLOWLIST
  return {k: v for k, v in fdef.attr.items()
          if k in allowed and k != _attributes.IMPLEMENTS}


def add_function(graph, function):
  """Adds `function` (from `make_function`) to `graph` once."""
  if not graph._is_function(function.name):  # pylint: disable=protected-access
    graph._add_function_recursive(function)  # pylint: disable=protected-access
  return function.name


def point_call_at(op, name):
  """Sets call op `op`'s function (attribute `f`) to `name`, with no new
  shape inference (the caller holds the graph's mutation lock)."""
  op._set_func_attr("f", tf.compat.as_str(name))  # pylint: disable=protected-access


def has_function(graph, name):
  """Whether `graph` (or a graph it is nested in) holds function `name`."""
  return graph._is_function(name)  # pylint: disable=protected-access


def new_uid():
  return tf_ops.uid()


def function_attr(name):
  """The AttrValue naming function `name` (a call op's `f`)."""
  return AttrValue(func=attr_value_pb2.NameAttrList(name=tf.compat.as_str(name)))


def op_running_graph(func_graph):
  """The op of `func_graph`'s outer graph that runs it as a function (a
  cond's branch, a loop's body, a call), by the function attributes of
  the outer graph's ops; None when there is none (for error messages)."""
  outer = getattr(func_graph, "outer_graph", None)
  if outer is None:
    return None
  name = tf.compat.as_bytes(func_graph.name)
  for op in outer.get_operations():
    for value in op.node_def.attr.values():
      funcs = [value.func] if value.HasField("func") else list(value.list.func)
      if any(tf.compat.as_bytes(f.name) == name for f in funcs):
        return op
  return None


# ----- graph walk reads (tfgrad/graph_walk) -----
# The walk between xs and ys reads every op's inputs and every input's
# dtype once per gradient call; these skip the generic paths for that.


def op_inputs(op):
  """`op.inputs`: the tuple TF's Operation keeps in `_inputs_val` once its
  `inputs` property has built it (TF 2.x through 2.21), read without the
  property call; built through the property the first time."""
  cached = op._inputs_val  # pylint: disable=protected-access
  return op.inputs if cached is None else cached


def trainability_check():
  """A function answering `is_trainable(t)` for graph tensors that
  remembers the answer per dtype object (`Tensor._dtype`, the DType TF
  stores on each graph tensor, TF 2.x through 2.21; keyed by identity,
  which skips DType's Python-level hash, and holding the dtype so its id
  stays its own): all but variant tensors are trainable or not by dtype
  alone. Create one per gradient call: the answer for quantized dtypes
  follows TF's flags, which may change between calls."""
  known = {}
  def check(t):
    dtype = t._dtype  # pylint: disable=protected-access
    entry = known.get(id(dtype))
    if entry is None:
      if dtype == tf.variant:
        return is_trainable(t)
      entry = known[id(dtype)] = (dtype, is_trainable(t))
    return entry[1]
  return check


# ----- inputs grouped by argument -----


def grouped_inputs(op_def_proto, inputs, list_length):
  """`inputs` (flat, as an op lists them) grouped by `op_def_proto`'s input
  arguments, list arguments as lists, as the C API takes them; None when
  they do not add up. `list_length(arg)` gives the number of inputs of a
  list argument (from an op's attributes or a NodeDef's)."""
  grouped, i = [], 0
  for arg in op_def_proto.input_arg:
    if arg.number_attr or arg.type_list_attr:
      n = list_length(arg)
      grouped.append(list(inputs[i:i + n]))
      i += n
    else:
      grouped.append(inputs[i])
      i += 1
  return grouped if i == len(inputs) else None
