import numpy as np

from xvalidate.core import layout


def test_nchw_tensor_is_moved_to_nhwc():
    nhwc = np.arange(2 * 4 * 5 * 3, dtype=np.float32).reshape(2, 4, 5, 3)
    nchw = nhwc.transpose(0, 3, 1, 2)
    assert layout.candidates(nhwc.shape, nchw.shape) == ["NCHW->NHWC"]
    np.testing.assert_array_equal(layout.apply("NCHW->NHWC", nchw), nhwc)


def test_flatten_order_is_reordered_with_the_producer_shape():
    nhwc = np.random.default_rng(0).standard_normal((2, 4, 5, 3))
    flat_src = nhwc.reshape(2, -1)
    flat_dst = nhwc.transpose(0, 3, 1, 2).reshape(2, -1)
    options = layout.candidates(flat_src.shape, flat_dst.shape, dst_producer_shape=(2, 3, 4, 5))
    assert options == [None, "flatten:NCHW->NHWC", "flatten:NHWC->NCHW"]
    np.testing.assert_array_equal(layout.apply("flatten:NCHW->NHWC", flat_dst, (2, 3, 4, 5)), flat_src)


def test_incompatible_shapes_have_no_candidate():
    assert layout.candidates((1, 80, 120, 128), (1, 128, 78, 118)) == []


def test_input_layout_round_trip():
    x = np.random.default_rng(1).standard_normal((3, 8, 9, 3)).astype(np.float32)
    y = layout.to_layout(x, "NHWC", "NCHW")
    assert y.shape == (3, 3, 8, 9) and y.flags.c_contiguous
    np.testing.assert_array_equal(layout.to_layout(y, "NCHW", "NHWC"), x)
    assert layout.to_layout(x, "NHWC", "NHWC") is x


def test_size_one_axes_are_reshaped_away():
    pooled = np.arange(6, dtype=np.float32).reshape(2, 3, 1, 1)
    assert layout.candidates((2, 3), pooled.shape) == ["reshape:3"]
    np.testing.assert_array_equal(layout.apply("reshape:3", pooled), pooled.reshape(2, 3))
