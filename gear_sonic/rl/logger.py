"""Training logs: one console line per iteration, a progress bar with ETA, W&B, a local metrics file and a PNG curve.

Only the main process logs. W&B runs offline when the server is unreachable (here it always is) or when
`WANDB_MODE=offline`; `use_wandb=false` disables it.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from tqdm import tqdm

METRICS_FILE = "metrics.jsonl"
CURVE_FILE = "learning_curve.png"
# Figures shown in the console line, in this order, when present.
CONSOLE_KEYS = (
    "world/num_processes",
    "throughput/env_steps_per_s",
    "episode_length_s",
    "reward/per_step",
    "loss/policy",
    "loss/value",
    "loss/aux_total",
    "policy/learning_rate",
    "policy/kl",
)
CURVE_KEYS = ("reward/per_step", "episode_length_s", "loss/value", "loss/aux_total")


class TrainingLogger:
    def __init__(
        self,
        run_dir: Path,
        total_iterations: int,
        start_iteration: int,
        *,
        enabled: bool,
        use_wandb: bool,
        wandb_project: str = "gear_sonic",
        wandb_entity: str | None = None,
        run_name: str | None = None,
        config: dict | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.history: list[dict] = []
        self._wandb = None
        self._bar = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        metrics_path = self.run_dir / METRICS_FILE
        if metrics_path.exists():  # resuming: keep the curve continuous
            self.history = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
            self.history = [h for h in self.history if h.get("iteration", 0) < start_iteration]
            metrics_path.write_text("".join(json.dumps(h) + "\n" for h in self.history))
        self._metrics = open(metrics_path, "a")
        if use_wandb:
            import wandb

            os.environ.setdefault("WANDB_MODE", "offline")
            os.environ.setdefault("WANDB_SILENT", "true")
            self._wandb = wandb.init(
                project=wandb_project, entity=wandb_entity, name=run_name, dir=str(self.run_dir),
                config=config, resume="allow",
            )
        self._bar = tqdm(
            total=total_iterations, initial=start_iteration, desc="training", unit="it",
            dynamic_ncols=True, file=sys.stderr, disable=not sys.stderr.isatty(),
        )

    def log(self, iteration: int, stats: dict[str, float], total_iterations: int, elapsed_s: float) -> None:
        if not self.enabled:
            return
        record = {"iteration": iteration, **{k: float(v) for k, v in stats.items()}}
        self.history.append(record)
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()
        if self._wandb is not None:
            self._wandb.log(stats, step=iteration)
        done = len(self.history)
        remaining = total_iterations - iteration - 1
        eta = elapsed_s / max(done, 1) * remaining
        parts = [f"it {iteration + 1}/{total_iterations}"]
        parts += [f"{k.split('/')[-1]}={_fmt(stats[k])}" for k in CONSOLE_KEYS if k in stats]
        parts += [f"{k.removeprefix('Episode_Reward/')}={_fmt(v)}" for k, v in sorted(stats.items()) if k.startswith("Episode_Reward/")]
        parts += [f"{k.removeprefix('loss/')}={_fmt(v)}" for k, v in sorted(stats.items()) if k.startswith("loss/aux_") and k != "loss/aux_total"]
        parts.append(f"eta={_fmt_time(eta)}")
        line = " | ".join(parts)
        if self._bar is not None and not self._bar.disable:
            self._bar.update(1)
            self._bar.write(line)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        self._metrics.close()
        if self._bar is not None:
            self._bar.close()
        if self._wandb is not None:
            self._wandb.finish()
        write_learning_curve(self.history, self.run_dir / CURVE_FILE)


def write_learning_curve(history: list[dict], path: Path) -> Path | None:
    """A PNG with one panel per key in CURVE_KEYS, against iteration; written atomically."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in CURVE_KEYS if any(k in h for h in history)]
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(4 * max(len(keys), 1), 3), squeeze=False)
    for ax, key in zip(axes[0], keys):
        xs = [h["iteration"] for h in history if key in h]
        ys = [h[key] for h in history if key in h]
        ax.plot(xs, ys)
        ax.set_title(key)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _fmt(v: float) -> str:
    if v == 0 or not math.isfinite(v):
        return str(v)
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.0f}"


def _fmt_time(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
