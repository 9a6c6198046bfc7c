"""Exact resume: the env's and simulator's complete state round-trips bit-exactly, and training k
iterations, stopping and resuming to k+m gives the same parameters as an uninterrupted k+m run.
Also: a weights-only folder as +checkpoint starts a new run finetuning from those weights."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))

from env_clips import write_test_library  # noqa: E402
from train_runs import kill_tree, run, run_folder, start, train_cmd  # noqa: E402

from gear_sonic.envs import TrackingEnv, make_env_config  # noqa: E402
from gear_sonic.model import SonicConfig, SonicModel  # noqa: E402
from gear_sonic.rl.checkpoint import load_training_state  # noqa: E402
from gear_sonic.rl.trainer import parameter_digest  # noqa: E402


def _env(library: Path, seed: int) -> TrackingEnv:
    cfg = make_env_config([
        "num_envs=4", "sim.num_threads=2", f"seed={seed}",
        f"++manager_env.commands.motion.motion_lib_cfg.motion_file={library}",
        # Resident-subset swaps and frequent pushes, so every piece of state is exercised.
        "++manager_env.commands.motion.motion_lib_cfg.max_unique_motions=2",
        "++manager_env.commands.motion.motion_lib_cfg.resample_motions_every_iters=3",
        "++manager_env.events.push_interval_s=[0.1,0.3]",
    ])
    return TrackingEnv(cfg)


def _drive(env: TrackingEnv, steps: int, gen: torch.Generator, first_step: int) -> torch.Tensor:
    rows = []
    for t in range(first_step, first_step + steps):
        obs, reward, terminated, truncated, _ = env.step(0.5 * torch.randn(env.num_envs, 29, generator=gen))
        if t % 5 == 4:  # an "iteration" every 5 steps
            swapped = env.on_iteration_end(t // 5)
            obs = swapped if swapped is not None else obs
        rows.append(torch.cat([*obs.values(), reward[:, None], terminated[:, None], truncated[:, None]], 1))
    return torch.stack(rows)


def test_env_full_state_round_trips_bit_exactly(tmp_path):
    library = write_test_library(tmp_path / "robot", num_clips=3, seconds=3.0)
    env = _env(library, seed=0)
    env.reset()
    gen = torch.Generator().manual_seed(1)
    _drive(env, 20, gen, 0)
    state, gen_state = env.full_state_dict(), gen.get_state()
    assert any(k.startswith("sim.mj_integration_state") for k in state)
    expected = _drive(env, 35, gen, 20)
    env.close()

    other = _env(library, seed=123)  # a different seed: everything must come from the state
    other.reset()
    other.load_full_state_dict(state)
    gen.set_state(gen_state)
    assert torch.equal(_drive(other, 35, gen, 20), expected)
    other.close()


def test_resume_is_bit_exact(tmp_path):
    k, m = 1, 1
    full_logs, split_logs = tmp_path / "full", tmp_path / "split"
    # Domain randomisation and frequent pushes on, whatever the preset says, so their state is covered.
    events = ["++manager_env.events.randomize=true", "++manager_env.events.push=true",
              "++manager_env.events.push_interval_s=[0.05,0.1]"]
    # The uninterrupted run and the first leg run side by side (one thread each).
    runs = [start(train_cmd(full_logs, f"++algo.config.num_learning_iterations={k + m}", *events), tmp_path / "full.log"),
            start(train_cmd(split_logs, f"++algo.config.num_learning_iterations={k}", *events), tmp_path / "split.log")]
    try:
        codes = [p.wait(timeout=180) for p in runs]
    finally:
        for p in runs:
            kill_tree(p)
    assert codes == [0, 0], (tmp_path / "full.log").read_text()[-2000:] + (tmp_path / "split.log").read_text()[-2000:]
    split_run = run_folder(split_logs)
    state = load_training_state(split_run / "last")
    assert state.iteration == k and state.extra["env_state"] == "full"
    assert {"proprioception", "critic"} <= set(state.observations)

    out = run(train_cmd(split_logs, f"++algo.config.num_learning_iterations={k + m}", *events,
                        f"+checkpoint={split_run}/last"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"at iteration {k}: exact" in out.stdout
    assert run_folder(split_logs) == split_run  # resuming continues in the same run folder

    resumed = load_file(str(split_run / "last" / "model.safetensors"))
    uninterrupted = load_file(str(run_folder(full_logs) / "last" / "model.safetensors"))
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        assert torch.equal(resumed[name], uninterrupted[name]), name
    a = load_training_state(split_run / "last")
    b = load_training_state(run_folder(full_logs) / "last")
    assert a.iteration == b.iteration == k + m and a.learning_rate == b.learning_rate
    for key in b.env_state:
        # Loaded sampling counts become the shared base (delta 0); base + delta is what sampling uses.
        if not key.startswith("sampler.delta_"):
            assert torch.equal(a.env_state[key], b.env_state[key]), key
    for key in b.observations:
        assert torch.equal(a.observations[key], b.observations[key]), key
    # The metrics file continues without a gap or a duplicate.
    lines = (split_run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == k + m


def test_weights_only_folder_starts_a_new_finetuning_run(tmp_path):
    weights = tmp_path / "weights"
    model = SonicModel(SonicConfig.from_preset("sonic_cpu"))
    model.save_pretrained(weights)
    logs = tmp_path / "logs"
    # Learning rate 0: the trained parameters must be exactly the loaded ones.
    out = run(train_cmd(
        logs, "++algo.config.num_learning_iterations=1", f"+checkpoint={weights}",
        "++algo.config.schedule=fixed", "++algo.config.learning_rate=0.0",
    ))
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"finetuning from the weights in {weights}" in out.stdout
    run_dir = run_folder(logs)
    assert run_dir.parent.parent == logs and run_dir != weights
    trained = SonicModel.from_pretrained(run_dir / "last")
    assert load_training_state(run_dir / "last").iteration == 1
    for (name, p), q in zip(model.named_parameters(), trained.parameters()):
        assert torch.equal(p, q), name
    assert parameter_digest(trained) != parameter_digest(model)  # the critic normaliser did learn statistics
