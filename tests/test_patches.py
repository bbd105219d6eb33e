"""Tests for exifclip.patches: the paper's grid, patch views and batching."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exifclip.patches import PatchGrid, iter_patch_batches, make_grid, patch_view

# --------------------------------------------------------------------------- make_grid


# (H, W, P, num_per_dim) -> (stride, n_rows, n_cols), computed by hand from
# stride = (max(H, W) - P) // num_per_dim, n = 1 + (side - P) // stride.
PAPER_CASES = [
    # (640 - 124) // 30 = 516 // 30 = 17;  1 + 356 // 17 = 21;  1 + 516 // 17 = 31
    ((480, 640, 124, 30), (17, 21, 31)),
    # portrait: same stride, rows and columns swapped
    ((640, 480, 124, 30), (17, 31, 21)),
    # (1536 - 124) // 30 = 1412 // 30 = 47;  1 + 1412 // 47 = 1 + 30 = 31
    ((1536, 1536, 124, 30), (47, 31, 31)),
    # exactly one patch: (124 - 124) // 30 = 0 -> clamped to 1;  1 + 0 // 1 = 1
    ((124, 124, 124, 30), (1, 1, 1)),
    # barely larger: stride clamped to 1, so every pixel offset is a patch
    ((124, 130, 124, 30), (1, 1, 7)),
    # (2000 - 124) // 30 = 1876 // 30 = 62;  1 + 6 // 62 = 1;  1 + 1876 // 62 = 1 + 30 = 31
    ((130, 2000, 124, 30), (62, 1, 31)),
    ((2000, 130, 124, 30), (62, 31, 1)),
    # inexact division gives the longer side more than num_per_dim + 1 patches:
    # (1000 - 124) // 30 = 876 // 30 = 29;  1 + 876 // 29 = 1 + 30 = 31;  1 + (700 - 124) // 29 = 1 + 19 = 20
    ((700, 1000, 124, 30), (29, 20, 31)),
    # (4000 - 124) // 30 = 3876 // 30 = 129;  1 + 3876 // 129 = 31;  1 + (3000 - 124) // 129 = 1 + 22 = 23
    ((3000, 4000, 124, 30), (129, 23, 31)),
    # (100 - 10) // 9 = 10;  1 + 90 // 10 = 10;  1 + (55 - 10) // 10 = 5
    ((55, 100, 10, 9), (10, 5, 10)),
]


@pytest.mark.parametrize("args, expected", PAPER_CASES, ids=[str(a) for a, _ in PAPER_CASES])
def test_paper_grid_formula(args, expected):
    h, w, p, k = args
    grid = make_grid((h, w), patch_size=p, num_per_dim=k)
    assert isinstance(grid, PatchGrid)
    assert (grid.stride, grid.n_rows, grid.n_cols) == expected
    assert (grid.height, grid.width, grid.patch_size) == (h, w, p)
    assert grid.n_patches == expected[1] * expected[2]


def test_default_num_per_dim_is_30():
    assert make_grid((480, 640), 124) == make_grid((480, 640), 124, num_per_dim=30)


def test_shape_with_channels_is_the_same_grid():
    assert make_grid((480, 640, 3), 124) == make_grid((480, 640), 124)
    assert make_grid(np.zeros((480, 640, 3)).shape, 124).n_cols == 31


@given(
    h=st.integers(1, 3000),
    w=st.integers(1, 3000),
    p=st.integers(1, 300),
    k=st.integers(1, 60),
)
@settings(max_examples=50, deadline=None)
def test_portrait_landscape_symmetry(h, w, p, k):
    if min(h, w) < p:
        return
    a, b = make_grid((h, w), p, k), make_grid((w, h), p, k)
    assert a.stride == b.stride
    assert (a.n_rows, a.n_cols) == (b.n_cols, b.n_rows)
    # The longer side always gets at least num_per_dim + 1 patches unless the stride was clamped.
    longest = max(a.n_rows, a.n_cols)
    if (max(h, w) - p) // k >= 1:
        assert longest >= k + 1


def test_explicit_stride():
    grid = make_grid((480, 640), 124, stride=100)
    # 1 + 356 // 100 = 4;  1 + 516 // 100 = 6
    assert (grid.stride, grid.n_rows, grid.n_cols) == (100, 4, 6)
    # the stride overrides num_per_dim, which is then ignored (even if invalid)
    assert make_grid((480, 640), 124, num_per_dim=5, stride=100) == grid
    assert make_grid((480, 640), 124, num_per_dim=0, stride=100) == grid
    one = make_grid((124, 124), 124, stride=1000)
    assert (one.n_rows, one.n_cols) == (1, 1)


@pytest.mark.parametrize("shape", [(123, 640), (640, 123), (10, 10)])
def test_image_smaller_than_patch(shape):
    with pytest.raises(ValueError, match="smaller than one 124x124 patch"):
        make_grid(shape, 124)


@pytest.mark.parametrize("patch_size", [0, -1])
def test_non_positive_patch_size(patch_size):
    with pytest.raises(ValueError, match="patch_size"):
        make_grid((100, 100), patch_size)


@pytest.mark.parametrize("stride", [0, -3])
def test_non_positive_stride(stride):
    with pytest.raises(ValueError, match="stride"):
        make_grid((100, 100), 10, stride=stride)


@pytest.mark.parametrize("num_per_dim", [0, -1])
def test_non_positive_num_per_dim(num_per_dim):
    with pytest.raises(ValueError, match="num_per_dim"):
        make_grid((100, 100), 10, num_per_dim=num_per_dim)


def test_grid_is_frozen():
    grid = make_grid((100, 100), 10)
    with pytest.raises(AttributeError):
        grid.stride = 3  # type: ignore[misc]


# --------------------------------------------------------------------------- positions


def test_positions_row_major():
    grid = make_grid((480, 640), 124)  # stride 17, 21 x 31
    pos = grid.positions()
    assert pos.shape == (21 * 31, 2)
    expected = [(r * 17, c * 17) for r in range(21) for c in range(31)]
    np.testing.assert_array_equal(pos, np.array(expected))
    assert tuple(pos[0]) == (0, 0)
    assert tuple(pos[1]) == (0, 17)  # x moves fastest
    assert tuple(pos[31]) == (17, 0)
    assert tuple(pos[-1]) == (340, 510)
    assert 340 + 124 <= 480 and 510 + 124 <= 640


@given(
    h=st.integers(1, 400),
    w=st.integers(1, 400),
    p=st.integers(1, 64),
    k=st.integers(1, 40),
    explicit=st.one_of(st.none(), st.integers(1, 50)),
)
@settings(max_examples=50, deadline=None)
def test_positions_fit_and_cover(h, w, p, k, explicit):
    if min(h, w) < p:
        return
    grid = make_grid((h, w), p, k, stride=explicit)
    pos = grid.positions()
    assert pos.shape == (grid.n_patches, 2)
    s = grid.stride
    for idx, (y, x) in enumerate(pos):
        assert (y, x) == ((idx // grid.n_cols) * s, (idx % grid.n_cols) * s)
    # every patch fits inside the image ...
    assert pos[:, 0].max() + p <= h and pos[:, 1].max() + p <= w
    # ... and the grid is maximal: one more row or column would not fit.
    assert grid.n_rows * s + p > h and grid.n_cols * s + p > w


# --------------------------------------------------------------------------- patch_view


@pytest.mark.parametrize(
    "shape, p, kw",
    [
        ((23, 31, 3), 5, {"stride": 3}),
        ((50, 70, 3), 16, {"num_per_dim": 7}),
        ((9, 9, 3), 9, {}),
        ((20, 13, 4), 4, {"stride": 4}),
    ],
)
def test_patch_view_matches_slices(shape, p, kw):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    grid = make_grid(image.shape, p, **kw)
    view = patch_view(image, grid)
    assert view.shape == (grid.n_rows, grid.n_cols, p, p, shape[2])
    assert view.dtype == np.uint8
    assert np.shares_memory(view, image)
    s = grid.stride
    for r in range(grid.n_rows):
        for c in range(grid.n_cols):
            np.testing.assert_array_equal(view[r, c], image[r * s : r * s + p, c * s : c * s + p])
    # positions() and the view agree
    flat = view.reshape(grid.n_patches, p, p, shape[2])
    for k, (y, x) in enumerate(grid.positions()):
        np.testing.assert_array_equal(flat[k], image[y : y + p, x : x + p])


def test_patch_view_is_read_only_view():
    image = np.zeros((12, 12, 3), np.uint8)
    view = patch_view(image, make_grid(image.shape, 4, stride=4))
    assert not view.flags.writeable  # documented as read-only
    with pytest.raises(ValueError):
        view[0, 0, 0, 0, 0] = 1
    # but it tracks the image: a later change to the image shows through
    image[5, 6] = (7, 8, 9)
    np.testing.assert_array_equal(view[1, 1, 1, 2], (7, 8, 9))
    assert image.flags.writeable  # the image itself is untouched


@pytest.mark.parametrize("shape", [(12, 13, 3), (13, 12, 3), (11, 12, 3)])
def test_patch_view_size_mismatch(shape):
    grid = make_grid((12, 12), 4, stride=4)
    with pytest.raises(ValueError, match="12x12"):
        patch_view(np.zeros(shape, np.uint8), grid)


def test_patch_view_on_non_contiguous_image():
    base = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    image = base[::2, ::-1]  # 15 x 40, negative and doubled strides
    grid = make_grid(image.shape, 5, stride=2)
    view = patch_view(image, grid)
    for r in range(grid.n_rows):
        for c in range(grid.n_cols):
            np.testing.assert_array_equal(view[r, c], image[2 * r : 2 * r + 5, 2 * c : 2 * c + 5])


# --------------------------------------------------------------------------- iter_patch_batches


def expected_patches(views):
    """(image index, patch index, patch) of every patch, in order."""
    out = []
    for i, v in enumerate(views):
        flat = v.reshape((-1,) + v.shape[2:])
        for k in range(flat.shape[0]):
            out.append((i, k, flat[k]))
    return out


def check_batches(views, batch_size, batches):
    expected = expected_patches(views)
    if not expected:
        assert batches == []
        return
    sizes = [b[0].shape[0] for b in batches]
    assert all(n == batch_size for n in sizes[:-1])
    assert 1 <= sizes[-1] <= batch_size
    assert sum(sizes) == len(expected)
    for patches, image_index, patch_index in batches:
        assert patches.dtype == views[image_index[0]].dtype
        assert patches.flags.c_contiguous
        assert image_index.shape == patch_index.shape == (patches.shape[0],)
        assert np.issubdtype(image_index.dtype, np.integer) and np.issubdtype(patch_index.dtype, np.integer)
    patches = np.concatenate([b[0] for b in batches])
    image_index = np.concatenate([b[1] for b in batches])
    patch_index = np.concatenate([b[2] for b in batches])
    np.testing.assert_array_equal(image_index, [e[0] for e in expected])
    np.testing.assert_array_equal(patch_index, [e[1] for e in expected])
    np.testing.assert_array_equal(patches, np.stack([e[2] for e in expected]))


@st.composite
def view_lists(draw):
    p = draw(st.integers(1, 4))
    stride = draw(st.integers(1, 3))
    n = draw(st.integers(0, 5))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    views = []
    for _ in range(n):
        if draw(st.booleans()) and draw(st.booleans()):  # ~1 in 4: a failed image
            views.append(np.empty((0, 0, p, p, 3), np.uint8))
            continue
        h = draw(st.integers(p, p + 8))
        w = draw(st.integers(p, p + 8))
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        views.append(patch_view(image, make_grid(image.shape, p, stride=stride)))
    return views


@given(views=view_lists(), batch_size=st.integers(1, 20), as_generator=st.booleans())
@settings(max_examples=50, deadline=None)
def test_batches_cover_every_patch_in_order(views, batch_size, as_generator):
    source = (v for v in views) if as_generator else views
    batches = list(iter_patch_batches(source, batch_size))
    check_batches(views, batch_size, batches)


def test_docstring_example_sizes():
    img = np.zeros((8, 8, 3), np.uint8)
    v = patch_view(img, make_grid(img.shape, 4, stride=2))  # 3 x 3 = 9 patches
    assert [b[0].shape[0] for b in iter_patch_batches([v, v], batch_size=5)] == [5, 5, 5, 3]


def test_patches_share_batches_across_images():
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (6, 6, 3), dtype=np.uint8) for _ in range(3)]
    views = [patch_view(im, make_grid(im.shape, 4, stride=2)) for im in images]  # 4 patches each
    batches = list(iter_patch_batches(views, batch_size=5))
    assert [b[1].tolist() for b in batches] == [[0, 0, 0, 0, 1], [1, 1, 1, 2, 2], [2, 2]]
    assert [b[2].tolist() for b in batches] == [[0, 1, 2, 3, 0], [1, 2, 3, 0, 1], [2, 3]]
    np.testing.assert_array_equal(batches[0][0][4], images[1][0:4, 0:4])
    np.testing.assert_array_equal(batches[2][0][1], images[2][2:6, 2:6])


def test_empty_views_are_skipped_but_keep_their_index():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    good = patch_view(image, make_grid(image.shape, 4, stride=3))  # 1 x 2
    empty = np.empty((0, 0, 4, 4, 3), np.uint8)
    views = [empty, good, empty, empty, good, empty]
    batches = list(iter_patch_batches(iter(views), batch_size=3))
    image_index = np.concatenate([b[1] for b in batches]).tolist()
    patch_index = np.concatenate([b[2] for b in batches]).tolist()
    assert image_index == [1, 1, 4, 4]
    assert patch_index == [0, 1, 0, 1]
    assert [b[0].shape[0] for b in batches] == [3, 1]
    check_batches(views, 3, batches)


def test_only_empty_views_yield_nothing():
    empty = np.empty((0, 0, 4, 4, 3), np.uint8)
    assert list(iter_patch_batches([empty, empty], batch_size=4)) == []
    assert list(iter_patch_batches([], batch_size=4)) == []


def test_batches_are_copies_not_views():
    image = np.random.default_rng(4).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    view = patch_view(image, make_grid(image.shape, 4, stride=2))
    for patches, _, _ in iter_patch_batches([view], batch_size=4):
        assert not np.shares_memory(patches, image)
        assert patches.flags.writeable


def test_generator_is_consumed_lazily():
    pulled = []
    image = np.zeros((8, 8, 3), np.uint8)
    view = patch_view(image, make_grid(image.shape, 4, stride=4))  # 4 patches

    def views():
        for i in range(5):
            pulled.append(i)
            yield view

    it = iter_patch_batches(views(), batch_size=4)
    next(it)
    assert pulled == [0], "a full batch is yielded before the next image is requested"
    next(it)
    assert pulled == [0, 1]
    assert len(list(it)) == 3
    assert pulled == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("batch_size", [0, -2])
def test_batch_size_must_be_positive(batch_size):
    image = np.zeros((8, 8, 3), np.uint8)
    view = patch_view(image, make_grid(image.shape, 4, stride=4))
    with pytest.raises(ValueError, match="batch_size"):
        list(iter_patch_batches([view], batch_size))
