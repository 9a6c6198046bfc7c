"""Motion library: on-disk round trip, sampling and interpolation, velocities, side files, bad input."""

import json

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation, Slerp

from gear_sonic.data import (
    MotionClip,
    MotionFormatError,
    MotionLibrary,
    derive_velocities,
    load_clip_npz,
    resample_clip,
    save_clip_npz,
    write_motion_library,
    write_smpl_npz,
)
from gear_sonic.data.side_files import y_up_to_z_up


def make_clip(name: str, num_frames: int, fps: float, seed: int, yaw_rate: float = 0.7, side: bool = False) -> MotionClip:
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames) / fps
    root_pos = np.stack([0.4 * t, 0.1 * np.sin(2 * t), 0.76 + 0.03 * np.cos(3 * t)], axis=1)
    rotvec = np.stack([0.2 * np.sin(t), 0.15 * np.cos(1.3 * t), yaw_rate * t], axis=1)
    root_quat = Rotation.from_rotvec(rotvec).as_quat(scalar_first=True)
    dof = 0.4 * np.sin(t[:, None] * rng.uniform(0.5, 3.0, 29)[None] + rng.uniform(0, 6, 29)[None])
    extra = {}
    if side:
        extra["smpl_joints"] = rng.normal(size=(num_frames, 24, 3)).astype(np.float32)
        extra["soma_joints"] = rng.normal(size=(num_frames, 26, 3)).astype(np.float32)
        extra["soma_root_quat"] = Rotation.from_rotvec(rotvec[:, [2, 1, 0]]).as_quat(scalar_first=True)
    return MotionClip(name, fps, root_pos, root_quat, dof, **extra).validated()


@pytest.fixture(scope="module")
def clips() -> list[MotionClip]:
    return [
        make_clip("walk/a", 61, 30.0, 0),
        make_clip("walk/b", 101, 50.0, 1, side=True),
        make_clip("c", 47, 30.0, 2, yaw_rate=-1.1),
    ]


@pytest.fixture(scope="module")
def library(tmp_path_factory, clips) -> MotionLibrary:
    path = write_motion_library(tmp_path_factory.mktemp("lib") / "lib", iter(clips))
    return MotionLibrary.open(path)


def same_rotation(a: np.ndarray, b: np.ndarray) -> float:
    """Largest deviation from |<a, b>| = 1 (quaternions equal up to sign)."""
    return float(np.max(1.0 - np.abs(np.sum(a * b, axis=-1))))


def test_round_trip_and_index(library, clips):
    assert len(library) == 3
    assert library.names == ["walk/a", "walk/b", "c"]
    assert np.array_equal(library.num_frames, [61, 101, 47])
    assert np.allclose(library.fps, [30, 50, 30])
    assert np.allclose(library.durations_s, [2.0, 2.0, 46 / 30])
    assert library.has_smpl and library.has_soma
    assert list(library.smpl_available) == [False, True, False]
    for i, clip in enumerate(clips):
        for got in (library[clip.name], library[i]):
            assert got.name == clip.name and got.fps == clip.fps
            assert np.array_equal(got.root_pos, clip.root_pos)
            assert np.array_equal(got.root_quat, clip.root_quat)
            assert np.array_equal(got.dof_pos, clip.dof_pos)
            assert (got.smpl_joints is None) == (clip.smpl_joints is None)
    assert np.array_equal(library["walk/b"].smpl_joints, clips[1].smpl_joints)
    assert np.array_equal(library["walk/b"].soma_root_quat, clips[1].soma_root_quat)
    index = json.loads((library.path / "index.json").read_text())
    assert index["frame_offsets"] == [0, 61, 162]
    assert isinstance(library.array("root_pos"), np.memmap)  # memory-mapped, not loaded
    with pytest.raises(KeyError, match="nope"):
        library["nope"]
    with pytest.raises(IndexError):
        library[3]


def test_sample_at_frame_times_equals_stored_frames(library, clips):
    ids, times, expected = [], [], []
    for i, clip in enumerate(clips):
        frames = np.arange(0, clip.num_frames, 7)
        ids += [i] * len(frames)
        times += list(frames / clip.fps)
        expected += [(clip, f) for f in frames]
    state = library.sample(torch.tensor(ids), torch.tensor(times, dtype=torch.float32))
    root_pos = np.stack([c.root_pos[f] for c, f in expected])
    dof = np.stack([c.dof_pos[f] for c, f in expected])
    quat = np.stack([c.root_quat[f] for c, f in expected])
    assert np.allclose(state.root_pos.numpy(), root_pos, atol=1e-6)
    assert np.allclose(state.dof_pos.numpy(), dof, atol=1e-6)
    assert same_rotation(state.root_quat.numpy(), quat) < 1e-6
    lin, ang, dof_vel = zip(*[tuple(v[f] for v in derive_velocities(c)) for c, f in expected])
    assert np.allclose(state.root_lin_vel.numpy(), np.stack(lin), atol=1e-5)
    assert np.allclose(state.root_ang_vel.numpy(), np.stack(ang), atol=1e-5)
    assert np.allclose(state.dof_vel.numpy(), np.stack(dof_vel), atol=1e-4)


def test_sample_interpolates_between_frames_and_clamps(library, clips):
    clip = clips[1]  # 50 fps, with side data
    frame, alpha = 37, 0.3
    ids = torch.tensor([[1, 1], [1, 1]])
    times = torch.tensor([[(frame + alpha) / 50.0, -1.0], [100.0, 2.0]])
    state = library.sample(ids, times)
    assert state.root_pos.shape == (2, 2, 3) and state.dof_pos.shape == (2, 2, 29)
    assert state.smpl_joints.shape == (2, 2, 24, 3) and state.soma_root_quat.shape == (2, 2, 4)
    lerp = (1 - alpha) * clip.root_pos[frame] + alpha * clip.root_pos[frame + 1]
    assert np.allclose(state.root_pos[0, 0].numpy(), lerp, atol=1e-5)
    assert np.allclose(state.dof_pos[0, 0].numpy(), (1 - alpha) * clip.dof_pos[frame] + alpha * clip.dof_pos[frame + 1], atol=1e-5)
    slerp = Slerp([0, 1], Rotation.from_quat(clip.root_quat[frame : frame + 2], scalar_first=True))([alpha])
    assert same_rotation(state.root_quat[0, 0].numpy(), slerp.as_quat(scalar_first=True)[0]) < 1e-6
    # Before the start reads frame 0, after the end reads the last frame.
    assert np.allclose(state.root_pos[0, 1].numpy(), clip.root_pos[0], atol=1e-6)
    assert np.allclose(state.root_pos[1, 0].numpy(), clip.root_pos[-1], atol=1e-6)
    assert np.allclose(state.root_pos[1, 1].numpy(), clip.root_pos[-1], atol=1e-6)
    assert np.allclose(state.smpl_joints[1, 1].numpy(), clip.smpl_joints[-1], atol=1e-6)
    with pytest.raises(IndexError):
        library.sample(torch.tensor([3]), torch.tensor([0.0]))


def test_clips_without_side_data_sample_neutral_values(library):
    state = library.sample(torch.tensor([0, 2]), torch.tensor([0.5, 0.5]))
    assert torch.all(state.smpl_joints == 0)
    assert torch.allclose(state.soma_root_quat, torch.tensor([1.0, 0, 0, 0]).expand(2, 4))


def test_velocities_match_analytic_motion():
    fps, count = 50.0, 151
    t = np.arange(count) / fps
    yaw_rate, speed = 0.9, np.array([0.5, -0.2, 0.0])
    clip = MotionClip(
        "spin", fps, t[:, None] * speed[None], Rotation.from_rotvec(np.outer(t, [0, 0, yaw_rate])).as_quat(scalar_first=True),
        np.outer(np.sin(t), np.ones(29)),
    ).validated()
    lin, ang, dof_vel = derive_velocities(clip)
    assert np.allclose(lin, speed, atol=1e-5)
    assert np.allclose(ang, [0, 0, yaw_rate], atol=1e-4)
    assert np.allclose(dof_vel[1:-1], np.outer(np.cos(t[1:-1]), np.ones(29)), atol=2e-4)


def test_resample_clip_keeps_frames_and_slerps():
    clip = make_clip("r", 121, 120.0, 3, yaw_rate=2.5)
    down = resample_clip(clip, 30.0)
    assert down.fps == 30.0 and down.num_frames == 31
    assert np.allclose(down.root_pos, clip.root_pos[::4], atol=1e-6)
    assert same_rotation(down.root_quat, clip.root_quat[::4]) < 1e-6
    up = resample_clip(down, 60.0)
    assert up.num_frames == 61
    mid_rot = Slerp([0, 1], Rotation.from_quat(down.root_quat[5:7], scalar_first=True))([0.5]).as_quat(scalar_first=True)
    assert same_rotation(up.root_quat[11], mid_rot[0]) < 1e-6
    assert np.allclose(up.dof_pos[11], 0.5 * (down.dof_pos[5] + down.dof_pos[6]), atol=1e-6)
    # A rate that does not divide the source: 120 -> 50 fps, every 5th output frame lands on every 12th input frame.
    odd = resample_clip(clip, 50.0)
    assert odd.num_frames == 51
    assert np.allclose(odd.root_pos[::5], clip.root_pos[::12], atol=1e-6)


def test_body_poses_by_forward_kinematics(library, clips):
    body_pos, body_quat = library.body_poses("c")
    assert body_pos.shape == (47, 30, 3) and body_quat.shape == (47, 30, 4)
    assert np.allclose(body_pos[:, 0].numpy(), clips[2].root_pos, atol=1e-6)  # pelvis = root
    # Feet are below the pelvis for a standing-height root.
    from gear_sonic.robots import G1Kinematics

    feet = G1Kinematics().body_index(["left_ankle_roll_link", "right_ankle_roll_link"])
    assert torch.all(body_pos[:, feet, 2] < body_pos[:, :1, 2] - 0.4)


def test_write_is_atomic_and_refuses_to_overwrite(tmp_path, clips):
    def failing():
        yield clips[0]
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_motion_library(tmp_path / "lib", failing())
    assert list(tmp_path.iterdir()) == []  # nothing half-written, temporary directory removed
    write_motion_library(tmp_path / "lib", clips[:1])
    with pytest.raises(FileExistsError):
        write_motion_library(tmp_path / "lib", clips)
    write_motion_library(tmp_path / "lib", clips, overwrite=True)
    assert len(MotionLibrary.open(tmp_path / "lib")) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["lib"]
    with pytest.raises(MotionFormatError, match="duplicate clip name"):
        write_motion_library(tmp_path / "dup", [clips[0], clips[0]])
    assert not (tmp_path / "dup").exists()


def test_not_a_library_errors_name_the_path(tmp_path, clips):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MotionFormatError, match=r"empty: not a motion library"):
        MotionLibrary.open(tmp_path / "empty")
    with pytest.raises(MotionFormatError, match="does not exist"):
        MotionLibrary.open(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(MotionFormatError, match="notes.txt"):
        MotionLibrary.open(tmp_path / "notes.txt")
    lib = write_motion_library(tmp_path / "lib", clips)
    (lib / "index.json").write_text("{not json")
    with pytest.raises(MotionFormatError, match=r"index.json: cannot read"):
        MotionLibrary.open(lib)
    lib = write_motion_library(tmp_path / "lib2", clips)
    np.save(lib / "dof_pos.npy", np.zeros((5, 29), np.float32))
    with pytest.raises(MotionFormatError, match=r"dof_pos.npy: shape"):
        MotionLibrary.open(lib)
    lib = write_motion_library(tmp_path / "lib3", clips)
    (lib / "root_quat.npy").unlink()
    with pytest.raises(MotionFormatError, match=r"root_quat.npy: cannot memory-map"):
        MotionLibrary.open(lib)


def test_clip_validation_rejects_bad_arrays():
    good = make_clip("g", 10, 30.0, 4)
    with pytest.raises(MotionFormatError, match="at least 2"):
        MotionClip("one", 30.0, good.root_pos[:1], good.root_quat[:1], good.dof_pos[:1]).validated()
    bad_dof = good.dof_pos.copy()
    bad_dof[4, 3] = np.nan
    with pytest.raises(MotionFormatError, match="frame 4"):
        MotionClip("nan", 30.0, good.root_pos, good.root_quat, bad_dof).validated()
    with pytest.raises(MotionFormatError, match=r"dof_pos has shape \(10, 28\)"):
        MotionClip("w", 30.0, good.root_pos, good.root_quat, good.dof_pos[:, :28]).validated()


def test_per_clip_npz_directory_opens_as_library(tmp_path, clips):
    for clip in clips:
        save_clip_npz(tmp_path / "clips" / f"{clip.name}.npz", clip)
    back = load_clip_npz(tmp_path / "clips" / "walk" / "b.npz")
    assert back.name == "walk/b" and np.array_equal(back.soma_joints, clips[1].soma_joints)
    lib = MotionLibrary.open(tmp_path / "clips")
    assert sorted(lib.names) == sorted(c.name for c in clips)
    assert np.array_equal(lib["walk/a"].dof_pos, clips[0].dof_pos)
    state = lib.sample(torch.tensor([lib.index_of("c")]), torch.tensor([0.1]))
    assert np.allclose(state.root_pos[0].numpy(), clips[2].root_pos[3], atol=1e-6)


def test_side_files_attach_by_name_converted_to_z_up(tmp_path, clips):
    lib_path = write_motion_library(tmp_path / "lib", clips[:1])
    rng = np.random.default_rng(5)
    joints_y_up = rng.normal(size=(121, 24, 3)).astype(np.float32)  # 60 fps over the same 2 s
    write_smpl_npz(tmp_path / "smpl" / "walk" / "a.npz", joints_y_up, fps=60.0)
    soma_quat = Rotation.from_rotvec(rng.normal(size=(31, 3)) * 0.1).as_quat(scalar_first=True)
    np.savez(tmp_path / "a.npz", soma_joints=rng.normal(size=(31, 26, 3)).astype(np.float32), root_quat=soma_quat,
             root_pos=np.zeros((31, 3)), fps=15.0, joint_names=np.array(["j"] * 26))
    (tmp_path / "soma").mkdir()
    (tmp_path / "a.npz").rename(tmp_path / "soma" / "a.npz")  # flat directory: matched by bare file name
    lib = MotionLibrary.open(lib_path, smpl_path=tmp_path / "smpl", soma_path=tmp_path / "soma")
    assert lib.has_smpl and lib.has_soma
    clip = lib["walk/a"]
    assert clip.smpl_joints.shape == (61, 24, 3)
    assert np.allclose(clip.smpl_joints, y_up_to_z_up(joints_y_up[::2]), atol=1e-6)
    assert np.allclose(y_up_to_z_up(np.array([1.0, 2.0, 3.0])), [1.0, -3.0, 2.0])
    assert same_rotation(clip.soma_root_quat[::4], soma_quat[::2].astype(np.float32)) < 1e-6
