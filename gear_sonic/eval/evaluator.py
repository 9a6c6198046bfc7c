"""Evaluation loop: play every resident clip once from frame 0 with one encoder, collect SONIC's metrics."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gear_sonic.eval.metrics import ClipResult, MetricAccumulator
from gear_sonic.layout.routing import single_encoder_routing

TABLE_METRICS = ("success_rate", "progress_rate", "mpjpe_g", "mpjpe_l", "mpjpe_pa", "vel_dist", "accel_dist")


@dataclass
class EvalReport:
    encoder: str
    metrics: dict[str, float]
    failed_clips: list[str]

    def table(self) -> str:
        """Plain-text table: each metric over all clips and over successful clips."""
        lines = [f"evaluation with the '{self.encoder}' encoder over {int(self.metrics['num_clips'])} clips"]
        lines.append(f"{'metric':<16}{'all':>12}{'successful':>12}")
        for key in TABLE_METRICS:
            succ = self.metrics.get(f"{key}_succ")
            succ_txt = f"{succ:12.4g}" if succ is not None else f"{'':>12}"
            lines.append(f"{key:<16}{self.metrics[key]:12.4g}{succ_txt}")
        regions = sorted({k.split("_", 2)[-1] for k in self.metrics if k.startswith("mpjpe_l_") and not k.endswith("succ")})
        for region in regions:
            lines.append(f"{'mpjpe_l/' + region:<16}{self.metrics[f'mpjpe_l_{region}']:12.4g}")
        return "\n".join(lines)

    def write_json(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"encoder": self.encoder, "metrics": self.metrics, "failed_clips": self.failed_clips}, indent=1))
        os.replace(tmp, path)
        return path


@torch.no_grad()
def evaluate_policy(env, model, encoder: str, *, show_progress: bool = True) -> EvalReport:
    """Run `env` (in evaluation mode) until every resident clip was played once; deterministic actions."""
    if not env.eval_mode:
        raise ValueError("evaluate_policy needs an environment in evaluation mode (manager_env.config.eval_mode=true)")
    names = list(model.config.encoder_names)
    encoder_index, _ = single_encoder_routing(names, encoder, env.num_envs, device=env.device)
    obs = env.reset()
    state = env.sim.state
    robot_frames: list[list[np.ndarray]] = [[p] for p in state.body_pos.cpu().numpy()]
    reference_frames: list[list[np.ndarray]] = [[p] for p in env.reference_body_pos().cpu().numpy()]
    accumulator = MetricAccumulator()
    finished: set[int] = set()
    total = len(env.cache.clip_ids)
    bar = tqdm(total=total, desc=f"eval[{encoder}]", unit="clip", disable=not show_progress)
    # A clip longer than the episode limit is truncated; nothing can run longer than the longest clip.
    max_steps = int(env.cache.clip_num_frames.max().item()) * (total // env.num_envs + 2) + 10
    for _ in range(max_steps):
        if env.eval_finished:
            break
        actions = model.act_inference(obs, encoder_index)
        obs, _, terminated, truncated, info = env.step(actions)
        frame = info["eval"]
        robot_now = frame["robot_body_pos"].cpu().numpy()
        ref_now = frame["reference_body_pos"].cpu().numpy()
        clip_of_env = frame["clip"].tolist()
        done = (terminated | truncated).cpu()
        for e in range(env.num_envs):
            robot_frames[e].append(robot_now[e])
            reference_frames[e].append(ref_now[e])
        if done.any():
            post = env.sim.state.body_pos.cpu().numpy()
            post_ref = env.reference_body_pos().cpu().numpy()
            for e in done.nonzero().squeeze(1).tolist():
                clip = clip_of_env[e]
                if clip >= 0 and clip in env.eval_results and clip not in finished:
                    finished.add(clip)
                    result = env.eval_results[clip]
                    accumulator.add(
                        ClipResult(
                            name=result.name,
                            robot_body_pos_m=np.stack(robot_frames[e]),
                            reference_body_pos_m=np.stack(reference_frames[e]),
                            clip_num_frames=result.num_frames,
                            terminated=result.terminated,
                        )
                    )
                    bar.update(1)
                robot_frames[e] = [post[e]]
                reference_frames[e] = [post_ref[e]]
    bar.close()
    if not env.eval_finished:
        raise RuntimeError(f"evaluation did not finish: {len(env.eval_results)} of {total} clips played")
    return EvalReport(encoder, accumulator.summary(), accumulator.failed_clip_names())
