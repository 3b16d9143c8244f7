"""Gradients of ops that run function graphs (If/Case branches, calls of
graph functions): the shared machinery of tfgrad's builders.

    BodyGradient   one forward body -> a gradient function graph built by
                   tfgrad's engine; what it reads of the body is decided
                   by the captures the rules make: inputs and outputs of
                   the body map to the op's inputs and outputs, constants
                   are copied, resource handles are traced to the body
                   input they come from, and every other intermediate is
                   recorded in `added` (wrapped in an optional when the
                   body is one of several branches)
    rewrite        the forward op once more outputs the added tensors:
                   new function definitions for its bodies, outputs
                   appended; a later gradient finds them among the body's
                   outputs and reuses them
    outer_inputs   the tensors that feed the gradient function

Callers hold `tf_compat.building_lock(op.graph)` from the first body
differentiated to the rewrite, so two threads differentiating the same op
take turns, the second finding the first one's outputs. No op-type names
here beyond the optional ops the wrapping builds.
"""

import contextlib
import threading
import weakref

import tensorflow as tf

from tfgrad import emit
from tfgrad import tf_compat
from tfgrad.emit import raw


class BodyGradient:
  """The gradient function of one forward body graph (`body`, a
  FuncGraph); `wrap` says whether intermediates travel as optionals
  (branches of a cond, of which only one runs) or as they are."""

  def __init__(self, body, wrap, in_cond):
    self.body = body
    self.added = []  # tensors of `body` that become new outputs
    self._wrap = wrap
    self._standing = {}  # t.ref() -> what stands for t in the graph
    self.graph = tf_compat.hooked_function_graph(
        tf_compat.unique_grad_name(body.name), body, self._stand_in,
        in_cond, lean_capture)

  def differentiate(self, ys, grad_ys, xs):
    """Gradients of `ys` (tensors of the body) toward `xs` (body inputs),
    built by tfgrad's engine into `self.graph`, `grad_ys` captured; None
    for `grad_ys` makes them the graph's first arguments instead (a
    gradient function reusable by every call of the body)."""
    results, arguments = [], []

    def build():
      from tfgrad import api  # pylint: disable=g-import-not-at-top
      seeds = grad_ys
      if seeds is None:
        seeds = [raw.Placeholder(dtype=y.dtype, shape=y.shape) for y in ys]
        arguments.extend(seeds)
      if ys:
        results.extend(api.gradients_helper(ys, xs, seeds,
                                            src_graph=self.body,
                                            seed_identity=not arguments))
      else:
        results.extend([None] * len(xs))
      return []
    tf_compat.trace_into(self.graph, build)
    if arguments:
      self.graph.inputs[:0] = arguments
    return results

  def _stand_in(self, t, capture):
    key = t.ref()
    found = self._standing.get(key)
    if found is None:
      found = self._standing[key] = self._make_stand_in(t, capture)
    return found

  def _make_stand_in(self, t, capture):
    if _index_of(t, self.body.inputs) is not None \
        or _index_of(t, self.body.outputs) is not None:
      return capture(t)
    value = tf_compat.constant_value(t)
    if value is not None:
      with _default(self.graph):
        return emit.const(value, t.dtype)
    if tf_compat.is_resource(t):
      return capture(tf_compat.resource_source(self.body, t))
    if not self._wrap:
      self.added.append(t)
      return capture(t)
    optional = self._existing_optional(t)
    if optional is None:
      with self.body.as_default():
        optional = raw.OptionalFromValue(components=[t])
      self.added.append(optional)
    captured = capture(optional)
    with _default(self.graph):
      return raw.OptionalGetValue(
          optional=captured, output_types=[t.dtype],
          output_shapes=[t.shape])[0]

  def _existing_optional(self, t):
    """The optional an earlier gradient made of `t` and the op outputs."""
    for consumer in t.consumers():
      if consumer.type == "OptionalFromValue" \
          and _index_of(consumer.outputs[0], self.body.outputs) is not None:
        return consumer.outputs[0]
    return None

  def outer_inputs(self, op, first_input):
    """(outer tensors, their placeholders in `self.graph`) feeding the
    gradient function; body input k is `op.inputs[first_input + k]`, body
    output j is `op.outputs[j]` (call after `rewrite`)."""
    outer, inner = [], []
    for external, internal in tf_compat.captures(self.graph):
      if not tf_compat.is_eager_tensor(external) \
          and external.graph is self.body:
        k = _index_of(external, self.body.inputs)
        if k is not None:
          external = op.inputs[first_input + k]
        else:
          external = op.outputs[_index_of(external, self.body.outputs)]
      outer.append(external)
      inner.append(internal)
    return outer, inner


def lean_capture(graph, tensor):
  """`graph`'s capture of `tensor`, a tensor of an outer graph: the
  placeholder `FuncGraph.capture` would make (same name, attributes, handle
  data), recorded in the graph's captures and inputs as TF records it, so
  function definitions and GraphDefs come out the same; built on tfgrad's
  lean op path rather than through TF's trace-type placeholder machinery,
  which costs several ops' worth of time per capture."""
  found = tf_compat.existing_capture(graph, tensor)
  if found is not None:
    return found
  name, attrs = tf_compat.capture_placeholder_attrs(tensor)
  free = (graph.control_dependencies(None)
          if tf_compat.has_control_dependencies(graph)
          else contextlib.nullcontext())
  with free:
    placeholder = tf_compat.create_op(
        graph, "Placeholder", [], attrs, None, name, []).outputs[0]
  tf_compat.record_capture(graph, tensor, placeholder)
  return placeholder


def _default(graph):
  """`graph.as_default()`, skipped when `graph` is the default already
  (entering a FuncGraph costs about as much as creating an op)."""
  if tf_compat.default_graph() is graph:
    return contextlib.nullcontext()
  return graph.as_default()


def _index_of(t, tensors):
  for i, u in enumerate(tensors):
    if u is t:
      return i
  return None


def rewrite(op, body_grads, func_attr, pad=None):
  """Makes `op` output what the gradients in `body_grads` added to its
  bodies. With several bodies (branches), each gets `pad(body, n)` more
  outputs so all have as many: slot i of the new outputs holds branch b's
  i-th added tensor when branch b ran. `func_attr` names the op's function
  attributes: a tuple (one per body) or the name of one list attribute
  holding them all. Holds the graph's mutation lock for the
  edit; does nothing when nothing was added."""
  count = max(len(bg.added) for bg in body_grads)
  if not count:
    return
  names = []
  for bg in body_grads:
    extra = list(bg.added)
    if len(extra) < count:
      extra += pad(bg.body, count - len(extra))
    bg.body.outputs.extend(extra)
    bg.body.name += "_rewritten"
    names.append(tf_compat.register_function(bg.body))
  added = body_grads[0].body.outputs[-count:]
  tout = [o.dtype for o in op.outputs] + [t.dtype for t in added]
  shapes = None
  if "output_shapes" in op.node_def.attr:
    shapes = [o.shape for o in op.outputs] + [t.shape for t in added]
  if isinstance(func_attr, tuple):
    attrs = dict(zip(func_attr, names))
  else:
    attrs = {func_attr: names}
  with tf_compat.mutation_lock(op.graph):
    tf_compat.rewrite_outputs(op, attrs, tout, shapes, added)


def none_optionals(body, n):
  """`n` empty optionals in `body` (the padding of a branch's outputs)."""
  with body.as_default():
    return [tf.raw_ops.OptionalNone() for _ in range(n)]


def matched_inputs(graphs, outer_lists, inner_lists):
  """One argument list for several branch gradient functions: the union
  of what each reads (deduplicated), each graph getting a placeholder it
  ignores for what only others read. Returns the union."""
  union, seen = [], set()
  for outer in outer_lists:
    for t in outer:
      if id(t) not in seen:
        seen.add(id(t))
        union.append(t)
  for graph, outer, inner in zip(graphs, outer_lists, inner_lists):
    mine = {id(t): p for t, p in zip(outer, inner)}
    args = []
    for t in union:
      p = mine.get(id(t))
      if p is None:
        with _default(graph):
          p = raw.Placeholder(dtype=t.dtype, shape=t.shape)
      args.append(p)
    tf_compat.set_function_inputs(graph, union, args)
  return union


def connected_inputs(body, indices):
  """The input indices among `indices` from which a differentiable path
  leads to a trainable output of `body`. Where tfgrad, leaving out outputs
  nothing reached, got no gradient for such an input, TF's rules (which
  feed zeros for those outputs) get zeros: the caller gives the same."""
  from tfgrad import backprop  # pylint: disable=g-import-not-at-top
  from tfgrad import graph_walk  # pylint: disable=g-import-not-at-top
  resolver = graph_walk.InputResolver([], [])
  connected = []
  for k in indices:
    reached = graph_walk.reachable_from(
        [body.inputs[k].op], resolver,
        lambda op: backprop.blocks_gradient(op, body, False))
    if _leads_out(body, k, reached):
      connected.append(k)
  return connected


def _leads_out(body, k, reached):
  """True if some trainable output of `body` is reached from input k (the
  input itself passed through counts)."""
  for t in body.outputs:
    if tf_compat.is_trainable(t) and (t is body.inputs[k] or t.op in reached):
      return True
  return False


def flatten_results(results):
  """Gradient results as function outputs: (flat tensors, per result
  None, "dense" or "slices")."""
  flat, kinds = [], []
  for r in results:
    if r is None:
      kinds.append(None)
    elif isinstance(r, tf.IndexedSlices):
      if r.dense_shape is None:
        raise ValueError("IndexedSlices without dense_shape")
      flat.extend([r.values, r.indices, r.dense_shape])
      kinds.append("slices")
    else:
      flat.append(r)
      kinds.append("dense")
  return flat, kinds


def unflatten_results(outputs, kinds):
  """`flatten_results` undone on a gradient op's outputs."""
  outs, results = iter(outputs), []
  for kind in kinds:
    if kind == "dense":
      results.append(next(outs))
    elif kind == "slices":
      results.append(tf.IndexedSlices(next(outs), next(outs), next(outs)))
    else:
      results.append(None)
  return results


# ----- calls of graph functions -----

class _CallGradients:
  """What tfgrad built for one forward function graph shared by call
  ops (a tf.function's concrete function): gradient functions by what
  they are asked for, forward functions by their output count.

  Built functions are held by weak reference only: each of them refers
  back to the forward graph (the key of `_call_gradients`), so a strong
  reference here would keep the key, and everything it reaches, alive
  for good. A graph that adds a function to its library keeps it (and
  its function graph and `BodyGradient`, which the graph's capture hook
  refers to) alive; once no graph holds it, it is built again if asked."""

  def __init__(self, attrs):
    self.attrs = attrs
    # (reached, strict) -> [(ref to BodyGradient, kinds, ref to fn, needed)]
    self.backward = {}
    self.forward = {}   # number of outputs -> ref to function

  def find_backward(self, key, wanted):
    """A live gradient entry for `key` covering the inputs `wanted`, as
    (BodyGradient, kinds, function, inputs covered), else None; dead
    entries are dropped."""
    entries = self.backward.setdefault(key, [])
    entries[:] = [e for e in entries
                  if e[0]() is not None and e[2]() is not None]
    for bg_ref, kinds, fn_ref, needed in entries:
      bg, fn = bg_ref(), fn_ref()  # strong while the caller uses them
      if bg is not None and fn is not None and wanted <= set(needed):
        return bg, kinds, fn, needed
    return None

  def add_backward(self, key, entry):
    bg, kinds, fn, needed = entry
    self.backward.setdefault(key, []).append(
        (weakref.ref(bg), kinds, weakref.ref(fn), needed))

  def find_forward(self, count):
    ref = self.forward.get(count)
    return None if ref is None else ref()

  def add_forward(self, count, function):
    self.forward[count] = weakref.ref(function)


_call_gradients = weakref.WeakKeyDictionary()  # forward graph -> ...
_graph_of_function = weakref.WeakValueDictionary()  # name -> FuncGraph
_call_gradients_guard = threading.Lock()


def _built_for(body, attrs):
  with _call_gradients_guard:
    entry = _call_gradients.get(body)
    if entry is None:
      entry = _call_gradients[body] = _CallGradients(attrs)
  return entry


def _made(function, graph, attrs):
  """Records that `function` (made by tfgrad) runs `graph`: a gradient
  of a call of it is built from that graph, as for a tf.function."""
  _built_for(graph, attrs)
  with _call_gradients_guard:
    _graph_of_function[tf.compat.as_str(function.name)] = graph
  return function


def own_function_source(name):
  """(FuncGraph, attributes) of a function tfgrad made, else None."""
  with _call_gradients_guard:
    graph = _graph_of_function.get(tf.compat.as_str(name))
    entry = _call_gradients.get(graph) if graph is not None else None
  return None if entry is None else (graph, entry.attrs)


def add_own_copy(graph, fdef, input_shapes=None, like=None):
  """Adds to `graph` a function running FunctionDef `fdef` (named as it
  says) with a FuncGraph of its own, built from the definition: the
  gradient of a call of it is built from that graph, so the rewrites
  that gradient makes (new outputs) touch the copy only, never the
  function `fdef` was copied from. `like`: tensors (one per argument)
  whose handle data (a variable's dtype and shape) the arguments take,
  which a definition does not always carry. Returns the function's
  name."""
  with _default(graph):
    body = tf_compat.graph_from_definition(fdef, input_shapes)
  if like is not None and len(like) == len(body.inputs):
    for src, dst in zip(like, body.inputs):
      if dst.dtype in (tf.resource, tf.variant):
        tf_compat.copy_handle_data(src, dst)
  attrs = tf_compat.function_attrs(fdef)
  function = _made(tf_compat.make_function(body, body.name, attrs), body,
                   attrs)
  return tf_compat.add_function(graph, function)


def call_gradient(op, grads, body, attrs, needed, strict):
  """The gradient function for call op `op` of the function graph `body`
  (with function attributes `attrs`), for the inputs in `needed`: one per
  body and request, shared by the calls (a function built for more inputs
  serves fewer: its other results go unused); the call op rewritten to
  the forward function exposing what it reads. Returns (BodyGradient,
  per input it covers "dense"/"slices"/None, function, inputs covered)."""
  from tfgrad import api  # pylint: disable=g-import-not-at-top
  reached = tuple(j for j, g in enumerate(grads)
                  if g is not None and tf_compat.is_trainable(body.outputs[j]))
  built = _built_for(body, attrs)
  with tf_compat.building_lock(body):
    entry = built.find_backward((reached, strict), set(needed))
    if entry is None:
      bg = BodyGradient(body, wrap=False, in_cond=False)
      with api.strict_mode(strict):
        results = bg.differentiate([body.outputs[j] for j in reached], None,
                                   [body.inputs[k] for k in needed])
      flat, kinds = flatten_results(results)  # (builds no op)
      bg.graph.outputs = flat
      body.outputs.extend(bg.added)
      fn = _made(tf_compat.make_function(
          bg.graph, f"{body.name}_grad_{tf_compat.new_uid()}", attrs),
                 bg.graph, attrs)
      entry = (bg, kinds, fn, tuple(needed))
      built.add_backward((reached, strict), entry)
    if len(op.outputs) < len(body.outputs):
      _call_latest_forward(op, body, attrs, built)
  return entry


def _call_latest_forward(op, body, attrs, built):
  """Points `op` at a function of `body` with all its current outputs."""
  count = len(body.outputs)
  forward = built.find_forward(count)
  if forward is None:
    forward = _made(tf_compat.make_function(
        body, f"{body.name}_forward_{tf_compat.new_uid()}", attrs),
                    body, attrs)
    built.add_forward(count, forward)
  added = body.outputs[len(op.outputs):]
  with tf_compat.building_lock(op.graph), tf_compat.mutation_lock(op.graph):
    tf_compat.add_function(op.graph, forward)
    tf_compat.rewrite_outputs(
        op, {"f": forward.name},
        [o.dtype for o in op.outputs] + [t.dtype for t in added], None,
        added)
