"""Action grids: round trips, hand-computed token ids, unnormalisation, bad tokens."""

from __future__ import annotations

import numpy as np
import pytest

from stvla_core.model import (
    ActionGrid,
    ActionStatistics,
    ActionTokenError,
    SpatialActionTokenizer,
    tiny_processor,
)
from stvla_core.model.action_tokenizer import (
    ROTATION_KEYS,
    TRANSLATION_KEYS,
    cartesian_to_spherical,
    gaussian_edges,
)

BEGIN = 1000


@pytest.fixture(scope="module")
def tok() -> SpatialActionTokenizer:
    return tiny_processor().action_tokenizer


def uniform_grid() -> ActionGrid:
    edges = {
        "theta_bins": np.linspace(0, np.pi, 5),
        "phi_bins": np.linspace(-np.pi, np.pi, 9),
        "r_bins": np.linspace(0, np.sqrt(3), 3),
        "roll_bins": np.linspace(-1, 1, 5),
        "pitch_bins": np.linspace(-1, 1, 5),
        "yaw_bins": np.linspace(-1, 1, 5),
    }
    return ActionGrid(edges)


def test_shipped_grid_is_the_official_size(tok: SpatialActionTokenizer) -> None:
    assert tok.grid.counts(TRANSLATION_KEYS) == (16, 32, 8)
    assert tok.grid.counts(ROTATION_KEYS) == (16, 16, 16)
    assert tok.vocab_size == 8194
    (t0, t1), (r0, r1), (g0, g1) = tok.ranges()
    assert (t1 - t0, r1 - r0, g1 - g0) == (4096, 4096, 2)
    assert t1 == r0 and r1 == g0


def test_round_trip_within_one_bin(tok: SpatialActionTokenizer) -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (500, 7))
    a[:, 6] = rng.integers(0, 2, 500)
    ids = tok.encode(a)
    back, details = tok.decode_detailed(ids)
    sph = cartesian_to_spherical(a[:, :3])
    for i in range(len(a)):
        trans, rot, grip = details[i]
        for axis, key in enumerate(TRANSLATION_KEYS):
            e = tok.grid.edges[key]
            cell = trans.cell[axis]
            assert e[cell] - 1e-9 <= sph[i, axis] <= e[cell + 1] + 1e-9
            assert abs(sph[i, axis] - trans.centre[axis]) <= (e[cell + 1] - e[cell]) / 2 + 1e-9
        for axis, key in enumerate(ROTATION_KEYS):
            e = tok.grid.edges[key]
            cell = rot.cell[axis]
            assert abs(a[i, 3 + axis] - back[i, 3 + axis]) <= (e[cell + 1] - e[cell]) / 2 + 1e-9
        assert grip.cell == (int(a[i, 6]),)
    np.testing.assert_array_equal(back[:, 6], a[:, 6])
    np.testing.assert_array_equal(tok.encode(back[:, :])[:, 1:], ids[:, 1:])  # rotation/gripper idempotent


def test_hand_computed_ids_on_a_uniform_grid() -> None:
    tok = SpatialActionTokenizer(uniform_grid(), BEGIN)
    # x=0.5, y=0.5, z=0: theta = pi/2 -> bin 2 of 4; phi = pi/4 -> bin 5 of 8; r = 0.707 -> bin 0 of 2
    # roll -0.9 -> 0, pitch 0.1 -> 2, yaw 0.99 -> 3; gripper 0.7 -> open
    ids = tok.encode(np.array([0.5, 0.5, 0.0, -0.9, 0.1, 0.99, 0.7]))
    t_idx = 2 * (8 * 2) + 5 * 2 + 0
    r_idx = 0 * 16 + 2 * 4 + 3
    n_t = 4 * 8 * 2
    assert ids.tolist() == [[BEGIN + t_idx, BEGIN + n_t + r_idx, BEGIN + n_t + 64 + 1]]
    decoded = tok.decode(ids)
    # rotation decodes to the centres of cells 0.5 wide: -0.75, 0.25, 0.75
    np.testing.assert_allclose(decoded[0, 3:], [-0.75, 0.25, 0.75, 1.0])


def test_zero_translation_lands_where_the_official_grid_puts_it() -> None:
    tok = SpatialActionTokenizer(uniform_grid(), BEGIN)
    ids = tok.encode(np.zeros(7))
    # r = 0: theta NaN in the official code -> the last theta bin (3); phi atan2(0,0)=0 -> bin 4; r bin 0
    assert ids[0, 0] == BEGIN + 3 * 16 + 4 * 2 + 0


def test_gaussian_edges_have_equal_mass() -> None:
    e = gaussian_edges(0.1, 0.3, -1.0, 1.0, 8)
    assert e[0] == -1.0 and e[-1] == 1.0 and np.all(np.diff(e) > 0)
    from statistics import NormalDist

    mass = np.diff([NormalDist(0.1, 0.3).cdf(x) for x in e])
    np.testing.assert_allclose(mass, mass[0], rtol=1e-9)


def test_unnormalize_with_bridge_statistics() -> None:
    stats = tiny_processor().stats("bridge_orig/1.0.0")
    out = stats.unnormalize(np.array([-1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]))
    assert out[0] == pytest.approx(stats.q01[0])
    assert out[1] == pytest.approx(stats.q99[1])
    assert out[2] == pytest.approx((stats.q01[2] + stats.q99[2]) / 2)
    assert out[6] == 1.0  # the gripper is not normalised
    x = np.array([0.01, -0.02, 0.03, 0.05, -0.05, 0.1, 0.0])
    np.testing.assert_allclose(stats.unnormalize(stats.normalize(x)), x, atol=1e-12)


def test_statistics_from_dict_defaults_mask() -> None:
    s = ActionStatistics.from_dict({"q01": [0.0, -1.0], "q99": [2.0, 1.0]})
    assert s.mask.tolist() == [True, True]


def test_tokens_outside_the_action_vocabulary_raise(tok: SpatialActionTokenizer) -> None:
    (t0, _), (r0, _), (g0, g1) = tok.ranges()
    good = np.array([t0, r0, g0])
    tok.decode(good)
    with pytest.raises(
        ActionTokenError, match=r"token 0 \(action 0, translation\) is id 5; expected a translation"
    ):
        tok.decode(np.array([5, r0, g0]))
    with pytest.raises(ActionTokenError, match=r"token 5 \(action 1, gripper\) is id"):
        tok.decode(np.array([t0, r0, g0, t0, r0, g1]))
    with pytest.raises(ActionTokenError, match="rotation"):
        tok.decode(np.array([[t0, t0, g0]]))
    with pytest.raises(ActionTokenError, match="multiple of 3"):
        tok.decode(np.array([t0, r0]))
    with pytest.raises(ActionTokenError, match=r"\(n, 7\)"):
        tok.encode(np.zeros(6))


def test_grid_rejects_unsorted_edges() -> None:
    g = uniform_grid().edges
    g["yaw_bins"] = np.array([0.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="yaw_bins"):
        ActionGrid(g)
