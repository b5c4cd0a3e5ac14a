"""Location-free feature encoding: invariances, hand-computed values, cap, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from federation.features import (
    READ_FEATURES,
    SUMMARY_FEATURES,
    FeatureInputError,
    build_examples,
    haversine_km,
)
from research.synth.toyworld import make_toy_world

R = READ_FEATURES.index
S = SUMMARY_FEATURES.index


@pytest.fixture(scope="module")
def world():
    return make_toy_world(n_vehicles=150, n_cameras=25, days=14, seed=3)


def _build(world, cameras=None, reads=None, **kw):
    return build_examples(
        world.reads if reads is None else reads,
        world.cameras if cameras is None else cameras,
        world.window_start,
        world.window_end,
        max_reads=kw.pop("max_reads", 48),
        **kw,
    )


def _rotate(cameras: pd.DataFrame, axis: np.ndarray, angle: float) -> pd.DataFrame:
    """Rotate every camera about ``axis`` through the Earth's centre (a rigid motion)."""
    lat, lon = np.radians(cameras["lat"].to_numpy()), np.radians(cameras["lon"].to_numpy())
    xyz = np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    k = axis / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    rot = np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx
    out = xyz @ rot.T
    moved = cameras.copy()
    moved["lat"] = np.degrees(np.arcsin(np.clip(out[:, 2], -1, 1)))
    moved["lon"] = np.degrees(np.arctan2(out[:, 1], out[:, 0]))
    return moved


def _assert_same_features(a, b) -> None:
    np.testing.assert_array_equal(a.vehicles, b.vehicles)
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_allclose(a.sequences, b.sequences, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a.summary, b.summary, rtol=1e-5, atol=1e-5)


def test_translating_every_camera_leaves_every_feature_unchanged(world):
    base = _build(world)
    shifted = world.cameras.copy()
    shifted["lon"] = shifted["lon"] + 7.25  # translation along the parallels: exact isometry
    _assert_same_features(base, _build(world, cameras=shifted))


def test_moving_the_whole_force_elsewhere_on_the_globe_leaves_features_unchanged(world):
    base = _build(world)
    moved = _rotate(world.cameras, np.array([0.3, -1.0, 0.5]), 0.9)
    assert np.abs(moved["lat"] - world.cameras["lat"]).min() > 1.0  # really moved
    _assert_same_features(base, _build(world, cameras=moved))


def test_features_change_when_camera_distances_change(world):
    """The invariance tests could fail: a non-rigid change of coordinates does show up."""
    base = _build(world)
    stretched = world.cameras.copy()
    stretched["lat"] = 53.48 + (stretched["lat"] - 53.48) * 2.0
    other = _build(world, cameras=stretched)
    assert not np.allclose(
        base.sequences[..., R("log_dist_km")], other.sequences[..., R("log_dist_km")]
    )


def test_camera_identity_does_not_enter(world):
    """Renaming every camera token (same places) gives the same features."""
    base = _build(world)
    rename = {t: f"{i:016x}" for i, t in enumerate(world.cameras["camera"][::-1])}
    cameras = world.cameras.assign(camera=world.cameras["camera"].map(rename))
    reads = world.reads.assign(camera=world.reads["camera"].map(rename))
    _assert_same_features(base, _build(world, cameras=cameras, reads=reads))


def test_shapes_do_not_depend_on_the_number_of_cameras():
    small = make_toy_world(n_vehicles=60, n_cameras=5, seed=1)
    large = make_toy_world(n_vehicles=60, n_cameras=300, seed=1)
    a = build_examples(
        small.reads, small.cameras, small.window_start, small.window_end, max_reads=32
    )
    b = build_examples(
        large.reads, large.cameras, large.window_start, large.window_end, max_reads=32
    )
    assert a.sequences.shape[1:] == b.sequences.shape[1:] == (32, len(READ_FEATURES))
    assert a.summary.shape[1] == b.summary.shape[1] == len(SUMMARY_FEATURES)


def _hand_world():
    cams = pd.DataFrame(
        {
            "camera": ["c0", "c1", "c2"],
            "lat": [53.0, 53.0, 54.0],
            "lon": [-2.0, -1.0, -2.0],
            "road_class": ["motorway", "urban", "something-else"],
        }
    )
    t0 = pd.Timestamp("2024-01-01 08:00", tz="UTC")  # a Monday, GMT (no DST offset)
    reads = pd.DataFrame(
        {
            "vehicle": ["vb", "va", "va", "va", "va", "vb"],
            "camera": ["c2", "c0", "c1", "c0", "c0", "c2"],
            "read_at": [
                t0 + pd.Timedelta(hours=1),
                t0,
                t0 + pd.Timedelta(minutes=30),
                t0 + pd.Timedelta(days=1),
                t0 + pd.Timedelta(days=2, minutes=10),
                t0 + pd.Timedelta(days=40),  # outside the window
            ],
        }
    )
    return reads, cams, t0.normalize(), t0.normalize() + pd.Timedelta(days=7)


def test_hand_computed_features():
    reads, cams, start, end = _hand_world()
    ex = build_examples(reads, cams, start, end, max_reads=8, timezone="UTC")
    assert list(ex.vehicles) == ["va", "vb"]
    assert list(ex.n_reads) == [4, 1]
    assert ex.mask.sum(axis=1).tolist() == [4, 1]
    va = ex.sequences[0]
    km01 = haversine_km(*np.radians([53.0, -2.0, 53.0, -1.0]))
    assert 60 < km01 < 70  # one degree of longitude at 53N
    np.testing.assert_allclose(
        va[:4, R("log_gap_hours")], np.log1p([0, 0.5, 23.5, 24 + 10 / 60]), rtol=1e-6
    )
    np.testing.assert_allclose(va[:4, R("log_dist_km")], np.log1p([0, km01, km01, 0]), rtol=1e-6)
    np.testing.assert_allclose(va[1, R("log_speed_kmh")], np.log1p(km01 / 0.5), rtol=1e-6)
    assert va[:4, R("is_first")].tolist() == [1, 0, 0, 0]
    assert va[:4, R("revisit")].tolist() == [0, 0, 1, 1]
    assert va[:4, R("same_camera_as_prev")].tolist() == [0, 0, 0, 1]
    np.testing.assert_allclose(va[:4, R("camera_share")], [0.75, 0.25, 0.75, 0.75])
    np.testing.assert_allclose(va[0, R("tod_sin")], np.sin(2 * np.pi * 8 / 24), atol=1e-6)
    np.testing.assert_allclose(va[0, R("dow_cos")], np.cos(2 * np.pi * (0 + 8 / 24) / 7), atol=1e-6)
    assert va[0, R("road_motorway")] == 1 and va[1, R("road_urban")] == 1
    vb = ex.sequences[1]
    assert vb[0, R("road_other")] == 1  # unknown road class -> other
    assert not ex.mask[1, 1:].any() and not vb[1:].any()  # padding is zero
    sa = ex.summary[0]
    np.testing.assert_allclose(sa[S("top1_camera_share")], 0.75)
    np.testing.assert_allclose(sa[S("top3_camera_share")], 1.0)
    np.testing.assert_allclose(
        sa[S("camera_entropy")], -(0.75 * np.log(0.75) + 0.25 * np.log(0.25)), rtol=1e-6
    )
    np.testing.assert_allclose(sa[S("log_active_days")], np.log1p(3))
    # modal hour 08: days 1 and 2 have 08:00/08:30, day 3 has 08:10 -> all three days regular
    np.testing.assert_allclose(sa[S("daily_periodicity")], 1.0)
    np.testing.assert_allclose(sa[S("revisit_share")], 0.5)
    np.testing.assert_allclose(sa[S("active_day_share")], 3 / 7, rtol=1e-6)


def test_cap_keeps_the_most_recent_reads_in_order():
    reads, cams, start, end = _hand_world()
    ex = build_examples(reads, cams, start, end, max_reads=2, timezone="UTC")
    va = ex.sequences[0]
    assert ex.n_reads[0] == 4 and ex.mask[0].all()
    # the last two reads of va: day 1 at c0 (gap 23.5 h) then day 2 at c0
    np.testing.assert_allclose(va[:, R("log_gap_hours")], np.log1p([23.5, 24 + 10 / 60]), rtol=1e-6)
    assert va[:, R("is_first")].tolist() == [0, 0]


def test_local_timezone_shifts_time_of_day():
    reads, cams, start, end = _hand_world()
    summer = reads.assign(read_at=reads["read_at"] + pd.Timedelta(days=182))
    ex = build_examples(
        summer, cams, start + pd.Timedelta(days=182), end + pd.Timedelta(days=182), max_reads=8
    )
    # 08:00 UTC on 1 July is 09:00 in London (BST)
    np.testing.assert_allclose(
        ex.sequences[0, 0, R("tod_sin")], np.sin(2 * np.pi * 9 / 24), atol=1e-6
    )


def test_a_read_at_an_unregistered_camera_is_an_error_without_the_token():
    reads, cams, start, end = _hand_world()
    reads.loc[2, "camera"] = "secret-camera-token"
    with pytest.raises(FeatureInputError) as err:
        build_examples(reads, cams, start, end)
    assert "row 2" in str(err.value) and "secret-camera-token" not in str(err.value)


def test_bad_inputs_name_field_and_row():
    reads, cams, start, end = _hand_world()
    bad_cams = cams.copy()
    bad_cams.loc[1, "lat"] = 123.0
    with pytest.raises(FeatureInputError, match=r"lat.*row 1"):
        build_examples(reads, bad_cams, start, end)
    bad_reads = reads.copy()
    bad_reads.loc[3, "read_at"] = None
    with pytest.raises(FeatureInputError, match=r"read_at.*row 3"):
        build_examples(bad_reads, cams, start, end)
    with pytest.raises(FeatureInputError, match="missing column"):
        build_examples(reads.drop(columns="camera"), cams, start, end)


def test_pyarrow_input_matches_pandas(world):
    import pyarrow as pa

    a = _build(world)
    b = _build(
        world, reads=pa.Table.from_pandas(world.reads), cameras=pa.Table.from_pandas(world.cameras)
    )
    _assert_same_features(a, b)


def test_row_order_of_reads_does_not_matter(world):
    shuffled = world.reads.sample(frac=1.0, random_state=99).reset_index(drop=True)
    _assert_same_features(_build(world), _build(world, reads=shuffled))
