"""Control steps per second of the full tracking environment versus a bare `mj_step` loop.

Both run in the same process, on the same G1 model, thread count and env count, and from the
same physical states: before every timed env step, a second set of MjData is loaded with the
env's current states and joint targets and stepped `decimation` times with nothing else
(no observations, rewards, terminations, resets or gathering). The ratio of the two times
is the share of the physics ceiling the environment reaches.

The policy holds the reference joint angles (actions = (reference - default) / scale, read
from the g1 observation), so robots stand and move much like early training.

    python benchmarks/env_throughput.py [--envs 1 16 64 256] [--motion-file DIR] [--parallel-env-maths]

Last line: env_vs_bare_ratio_64=<ratio>.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import mujoco
import torch

from gear_sonic.envs import TrackingEnv, make_env_config
from gear_sonic.robots import g1
from gear_sonic.sim.mujoco_backend import MujocoSimulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _library(motion_file: str | None, workdir: Path) -> tuple[str, str | None]:
    """(robot library, SMPL directory or None): the argument, else the sample data, else
    generated clips (which carry SMPL joints inside the library)."""
    if motion_file:
        return motion_file, None
    sample = Path(__file__).resolve().parents[1] / "sample_data"
    if (sample / "robot_filtered").exists():
        smpl = sample / "smpl_filtered"
        return str(sample / "robot_filtered"), str(smpl) if smpl.exists() else None
    from env_clips import write_test_library

    return str(write_test_library(workdir / "lib", num_clips=4, seconds=12.0)), None


def measure(
    num_envs: int, motion_file: str, smpl_dir: str | None, steps: int, threads: int, parallel_maths: bool
) -> tuple[float, float]:
    overrides = [
        f"num_envs={num_envs}", f"sim.num_threads={threads}", f"sim.parallel_env_maths={parallel_maths}",
        f"++manager_env.commands.motion.motion_lib_cfg.motion_file={motion_file}",
    ]
    if smpl_dir:
        overrides.append(f"++manager_env.commands.motion.motion_lib_cfg.smpl_motion_file={smpl_dir}")
    cfg = make_env_config(overrides)
    from gear_sonic.data import MotionLibrary

    if not MotionLibrary.open(motion_file, smpl_path=smpl_dir).has_smpl:
        cfg.encoders = ("g1", "teleop")
    env = TrackingEnv(cfg)
    sim = env.sim
    assert isinstance(sim, MujocoSimulator)
    bare = MujocoSimulator(num_envs, points=sim.points, num_threads=sim.num_threads)
    default = torch.tensor(g1.DEFAULT_JOINT_POS_RAD, dtype=torch.float32)
    scale = torch.tensor(g1.ACTION_SCALE, dtype=torch.float32)
    obs = env.reset()
    env_s = bare_s = 0.0
    for k in range(steps + 5):
        actions = (obs["g1"][:, :29] - default) / scale
        targets = default + env.default_joint_offset + actions * scale
        for i in range(num_envs):
            mujoco.mj_copyData(bare._datas[i], sim.mj_model, sim._datas[i])
            bare._datas[i].ctrl[:] = targets[i].numpy()
        t0 = time.perf_counter()
        bare.bare_step()
        t1 = time.perf_counter()
        obs, *_ = env.step(actions)
        t2 = time.perf_counter()
        if k >= 5:  # warm-up excluded
            bare_s += t1 - t0
            env_s += t2 - t1
    env.close()
    bare.close()
    return num_envs * steps / env_s, num_envs * steps / bare_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--motion-file", default=None)
    parser.add_argument("--threads", type=int, default=0, help="0: one per core")
    parser.add_argument("--env-steps", type=int, default=6000, help="env-steps per size (num_envs x control steps)")
    parser.add_argument("--parallel-env-maths", action="store_true",
                        help="torch intra-op threads for the env maths (sim.parallel_env_maths=true)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        motion_file, smpl_dir = _library(args.motion_file, Path(tmp))
        print(f"motion library: {motion_file}" + (f" + SMPL {smpl_dir}" if smpl_dir else ""), flush=True)
        ratios = {}
        for n in args.envs:
            steps = max(20, args.env_steps // n)
            env_sps, bare_sps = measure(n, motion_file, smpl_dir, steps, args.threads, args.parallel_env_maths)
            ratios[n] = env_sps / bare_sps
            print(f"envs={n:4d} steps={steps:4d}  env {env_sps:8.0f} ctrl-steps/s  bare mj_step {bare_sps:8.0f} "
                  f"ctrl-steps/s  ratio {ratios[n]:.3f}", flush=True)
        for n, r in ratios.items():
            print(f"env_vs_bare_ratio_{n}={r:.3f}")
        headline = 64 if 64 in ratios else max(ratios)
        print(f"env_vs_bare_ratio_{headline}={ratios[headline]:.3f}")


if __name__ == "__main__":
    main()
