"""tfgrad.emit against tf.raw_ops: the same ops (type, attributes, outputs,
values), and its constant sharing."""

import numpy as np
import pytest
import tensorflow as tf

from tfgrad import emit

raw = emit.raw


def _f32(value):
  return tf.constant(np.asarray(value, np.float32))


# (op type, kwargs builder): each is built with tf.raw_ops and with emit.raw.
CASES = {
    "MatMul": lambda: dict(a=_f32([[1, 2], [3, 4]]), b=_f32([[5, 6], [7, 8]]),
                           transpose_b=True),
    "Sum": lambda: dict(input=_f32([[1, 2], [3, 4]]), axis=[0],
                        keep_dims=True),
    "Reshape": lambda: dict(tensor=_f32([1, 2, 3, 4]), shape=[2, 2]),
    "ConcatV2": lambda: dict(values=[_f32([1]), _f32([2, 3])], axis=0),
    "AddN": lambda: dict(inputs=[_f32([1, 2]), _f32([3, 4]), _f32([5, 6])]),
    "Unpack": lambda: dict(value=_f32([[1, 2], [3, 4]]), num=2),
    "BroadcastGradientArgs": lambda: dict(s0=[2, 1, 3], s1=[4, 3]),
    "Squeeze": lambda: dict(input=_f32([[[1], [2]]]), axis=[0, 2]),
    "Cast": lambda: dict(x=_f32([1.5, -2.5]), DstT=tf.int32),
    "SelectV2": lambda: dict(condition=tf.constant([True, False]),
                             t=_f32([1, 2]), e=_f32([3, 4])),
    "Mul": lambda: dict(x=tf.constant([1.5, 2.0], tf.float64), y=3.0),
    "Transpose": lambda: dict(x=_f32([[1, 2, 3]]), perm=[1, 0]),
    "GatherV2": lambda: dict(params=_f32([[1, 2], [3, 4], [5, 6]]),
                             indices=[2, 0], axis=0),
    "Fill": lambda: dict(dims=[2, 3], value=_f32(7)),
    "SparseSplit": lambda: dict(  # several list outputs
        split_dim=0, indices=tf.constant([[0, 0], [1, 1], [2, 0]], tf.int64),
        values=_f32([1, 2, 3]), shape=tf.constant([3, 2], tf.int64),
        num_split=2),
    "Conv2DBackpropFilter": lambda: dict(
        input=tf.ones([1, 4, 4, 2]), filter_sizes=[3, 3, 2, 5],
        out_backprop=tf.ones([1, 4, 4, 5]), strides=[1, 1, 1, 1],
        padding="SAME"),
}


def _structure(result):
  if isinstance(result, tf.Operation):
    return "op"
  if isinstance(result, tf.Tensor):
    return "tensor"
  if isinstance(result, list):
    return ("list", len(result))
  return (type(result).__name__, result._fields,  # namedtuple
          [_structure(item) for item in result])


def _flat(result):
  if isinstance(result, tf.Tensor):
    return [result]
  return [t for item in result for t in _flat(item)]


def _attrs(op):
  return {k: v for k, v in op.node_def.attr.items() if not k.startswith("_")}


@pytest.mark.parametrize("op_type", sorted(CASES))
def test_raw_builds_the_op_tf_raw_ops_builds(op_type):
  graph = tf.Graph()
  with graph.as_default():
    theirs = getattr(tf.raw_ops, op_type)(**CASES[op_type]())
    ours = getattr(raw, op_type)(**CASES[op_type]())
    assert _structure(ours) == _structure(theirs)
    ours_flat, theirs_flat = _flat(ours), _flat(theirs)
    assert ours_flat[0].op.type == theirs_flat[0].op.type == op_type
    assert _attrs(ours_flat[0].op) == _attrs(theirs_flat[0].op)
    for a, b in zip(ours_flat, theirs_flat):
      assert a.dtype == b.dtype
      assert a.shape.as_list() == b.shape.as_list() if b.shape.rank is not None \
          else a.shape.rank is None
    with tf.compat.v1.Session() as sess:
      got, want = sess.run([ours_flat, theirs_flat])
  for a, b in zip(got, want):
    np.testing.assert_array_equal(a, b)


def test_names_and_scopes_follow_the_graph():
  graph = tf.Graph()
  with graph.as_default(), tf.name_scope("outer"):
    x = _f32([1.0])
    assert raw.Neg(x=x).op.name == "outer/Neg"
    assert raw.Neg(x=x).op.name == "outer/Neg_1"
    assert raw.Neg(x=x, name="minus").op.name == "outer/minus"


def test_control_dependencies_and_devices_apply():
  graph = tf.Graph()
  with graph.as_default():
    x = _f32([1.0])
    first = raw.Neg(x=x)
    with tf.control_dependencies([first]), tf.device("/cpu:0"):
      second = raw.Neg(x=x)
    assert first.op in second.op.control_inputs
    assert "CPU:0" in second.op.device


def test_function_graph_inputs_are_captured():
  outer = tf.constant([2.0])

  @tf.function
  def f():
    return raw.Mul(x=outer, y=outer)

  np.testing.assert_array_equal(f().numpy(), [4.0])


def test_eager_calls_run_tf_raw_ops():
  np.testing.assert_array_equal(raw.Mul(x=_f32([2.0]), y=_f32([3.0])).numpy(),
                                [6.0])


def test_missing_input_and_unknown_argument_are_type_errors():
  graph = tf.Graph()
  with graph.as_default():
    with pytest.raises(TypeError, match="missing input 'y'"):
      raw.Mul(x=_f32([1.0]))
    with pytest.raises(TypeError, match="unexpected argument 'bogus'"):
      raw.Neg(x=_f32([1.0]), bogus=1)


def test_mismatched_input_dtypes_are_type_errors_as_in_tf_raw_ops():
  """The single-tensor path hands such calls to the general one, which
  raises what tf.raw_ops raises."""
  graph = tf.Graph()
  with graph.as_default():
    x, y = _f32([1.0]), tf.constant([1.0], tf.float64)
    with pytest.raises(TypeError):
      tf.raw_ops.Mul(x=x, y=y)
    with pytest.raises(TypeError, match="does not match"):
      raw.Mul(x=x, y=y)
    # an input of fixed type (bool) given a float
    with pytest.raises(TypeError):
      tf.raw_ops.SelectV2(condition=x, t=x, e=x)
    with pytest.raises(TypeError, match="does not match"):
      raw.SelectV2(condition=x, t=x, e=x)


def test_a_dtype_the_op_def_does_not_allow_is_a_type_error_as_in_tf_raw_ops():
  """Reshape's `Tshape` allows int32 and int64 only: a float shape is the
  TypeError tf.raw_ops raises (not the ValueError of the C API), with the
  parameter and the allowed dtypes named."""
  graph = tf.Graph()
  with graph.as_default():
    x = _f32([1.0, 2.0, 3.0, 4.0])
    shape = tf.constant([2.0, 2.0])
    with pytest.raises(TypeError, match="allowed values: int32, int64"):
      tf.raw_ops.Reshape(tensor=x, shape=shape)
    with pytest.raises(TypeError, match=r"'shape'.* float32 not in list of "
                       r"allowed values: int32, int64"):
      raw.Reshape(tensor=x, shape=shape)
    # an allowed dtype still builds
    assert raw.Reshape(tensor=x, shape=tf.constant([2, 2], tf.int64)
                       ).shape.as_list() == [2, 2]
    assert not [op for op in graph.get_operations() if op.type == "Reshape"
                and op.get_attr("Tshape") == tf.float32]


def test_reference_inputs_build_what_tf_raw_ops_builds():
  graph = tf.Graph()
  with graph.as_default():
    ref = tf.compat.v1.Variable([1.0, 2.0], use_resource=False)._ref()  # pylint: disable=protected-access
    assert ref.dtype._is_ref_dtype  # pylint: disable=protected-access
    theirs = tf.raw_ops.Mul(x=ref, y=_f32([3.0, 4.0]))
    ours = raw.Mul(x=ref, y=_f32([3.0, 4.0]))
    assert _attrs(ours.op) == _attrs(theirs.op)
    assert ours.dtype == theirs.dtype


def test_python_scalars_take_the_partner_tensors_dtype():
  graph = tf.Graph()
  with graph.as_default():
    assert raw.Mul(x=tf.constant([1.0], tf.float64), y=2.0).dtype == tf.float64
    assert raw.AddV2(x=3, y=tf.constant([1], tf.int64)).dtype == tf.int64


def test_constants_are_shared_within_a_cache_only():
  graph = tf.Graph()
  with graph.as_default():
    assert emit.const([1, 2], tf.int32) is not emit.const([1, 2], tf.int32)
    with emit.const_cache():
      a = emit.const([1, 2], tf.int32)
      assert emit.const([1, 2], tf.int32) is a
      assert emit.const([1, 2], tf.int64) is not a
      assert emit.const([1, 3], tf.int32) is not a
      with tf.control_dependencies([a.op]):
        b = emit.const([1, 2], tf.int32)
      assert b is not a and a.op in b.op.control_inputs


def test_shared_constants_are_not_colocated_with_the_first_asker():
  graph = tf.Graph()
  with graph.as_default():
    x = _f32([1.0])
    with emit.const_cache():
      with graph.colocate_with(x.op):
        c = emit.const([5], tf.int32)
      assert c.op.colocation_groups() == [f"loc:@{c.op.name}".encode()]


def test_constants_are_never_folded():
  graph = tf.Graph()
  with graph.as_default(), emit.const_cache():
    x = emit.const(np.float32([1.0, 2.0]))
    assert raw.Reshape(tensor=x, shape=[2, 1]).op.type == "Reshape"
    assert raw.RealDiv(x=x, y=emit.const(np.float32(2.0))).op.type == "RealDiv"


def test_known_value_only_for_constants_of_the_current_cache():
  graph = tf.Graph()
  with graph.as_default():
    other = tf.constant([1.0])
    with emit.const_cache():
      mine = emit.const([1.0], tf.float32)
      np.testing.assert_array_equal(emit.known_value(mine), [1.0])
      assert emit.known_value(other) is None
    assert emit.known_value(mine) is None


def test_after_makes_forward_only_ops_wait_for_the_gradient():
  g = tf.Graph()
  with g.as_default():
    x = tf.constant([1.0, 2.0])
    grad = tf.sin(x)
    with emit.after(grad):
      cos = emit.raw.Cos(x=x)              # forward values only: waits
      scaled = emit.raw.Mul(x=cos, y=x)    # input built in the block
      product = emit.raw.Mul(x=grad, y=x)  # takes the gradient itself
      two = emit.const(2.0)                # no inputs
    after_block = emit.raw.Cos(x=x)
  assert cos.op.control_inputs == [grad.op]
  assert scaled.op.control_inputs == []
  assert product.op.control_inputs == []
  assert two.op.control_inputs == []
  assert after_block.op.control_inputs == []


def test_after_waits_for_several_gradients_and_slices_values():
  g = tf.Graph()
  with g.as_default():
    x = tf.constant([1.0, 2.0])
    a, b = tf.sin(x), tf.cos(x)
    slices = tf.IndexedSlices(tf.exp(x), tf.constant([0, 1]))
    with emit.after(a, None, b):
      both_ = emit.raw.Neg(x=x)
    with emit.after(slices):
      on_values = emit.raw.Neg(x=x)
  assert set(both_.op.control_inputs) == {a.op, b.op}
  assert on_values.op.control_inputs == [slices.values.op]


def test_after_imposes_no_wait_for_constants_known_values_or_none():
  g = tf.Graph()
  with g.as_default():
    x = tf.constant([1.0, 2.0])
    for grad in (None, tf.constant(1.0), emit.Known(1.0, tf.float32)):
      with emit.after(grad):
        assert emit.raw.Neg(x=x).op.control_inputs == []


def test_after_through_tf_constructor_path():
  """A capture into a function graph takes TF's own constructor; the wait
  applies there too."""
  outer = tf.Graph()
  with outer.as_default():
    x = tf.constant([1.0, 2.0])

    @tf.function
    def f():
      grad = tf.identity(tf.constant([3.0, 4.0]))
      with emit.after(grad):
        return emit.raw.Cos(x=x)

    out = f.get_concrete_function().graph.outputs[0]
  cos = next(op for op in out.graph.get_operations() if op.type == "Cos")
  assert [op.type for op in cos.control_inputs] == ["Identity"]
