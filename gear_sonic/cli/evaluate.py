"""`python gear_sonic/eval_agent_trl.py +checkpoint=<dir> [overrides]`: metrics or ONNX export, SONIC's interface.

    python gear_sonic/eval_agent_trl.py +checkpoint=<dir> +headless=True ++eval_callbacks=im_eval \
        ++num_envs=16 "+manager_env/terminations=tracking/eval" [++use_encoder=g1]
    python gear_sonic/eval_agent_trl.py +checkpoint=<dir> +headless=True ++num_envs=1 +export_onnx_only=true

The checkpoint's own training overrides are replayed first (so its motion files and experiment
apply), then the command line's; later ones win.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from gear_sonic.cli.common import RunOptions, normalized_overrides, quiet_library_progress_bars, seed_everything
from gear_sonic.cli.train import OVERRIDES_FILE, build_env
from gear_sonic.envs.config import compose_config
from gear_sonic.model.folders import resolve_checkpoint

SUPPORTED_CALLBACKS = ("im_eval",)


def _checkpoint_argument(overrides: list[str]) -> str:
    for item in overrides:
        key, _, value = item.partition("=")
        if key.lstrip("+") == "checkpoint" and value:
            return value
    raise SystemExit("eval_agent_trl.py: pass the checkpoint to evaluate, e.g. +checkpoint=logs_rl/<project>/<run>/last")


def _training_overrides(checkpoint: Path) -> list[str]:
    path = checkpoint / OVERRIDES_FILE
    if not path.is_file():
        return []
    data = yaml.safe_load(path.read_text()) or {}
    return [o for o in data.get("overrides", []) if o.partition("=")[0].lstrip("+") != "checkpoint"]


def main(argv: list[str] | None = None) -> int:
    user_overrides = list(sys.argv[1:] if argv is None else argv)
    quiet_library_progress_bars()
    checkpoint = resolve_checkpoint(_checkpoint_argument(user_overrides))
    overrides = normalized_overrides(_training_overrides(checkpoint)) + normalized_overrides(user_overrides)
    cfg = compose_config(overrides, "eval")

    if str(cfg.get("export_onnx_only", False)).lower() in ("true", "1"):
        from gear_sonic.export.__main__ import main as export_main

        out = checkpoint / "exported"
        print(f"exporting ONNX files of {checkpoint} to {out}")
        return export_main(["--checkpoint", str(checkpoint), "--output", str(out)])

    callbacks = str(cfg.get("eval_callbacks", "im_eval"))
    if callbacks not in SUPPORTED_CALLBACKS:
        raise SystemExit(f"eval_callbacks={callbacks} is not supported; known: {list(SUPPORTED_CALLBACKS)}")
    from gear_sonic.eval.evaluator import evaluate_policy
    from gear_sonic.model import SonicModel

    options = RunOptions.from_config(cfg)
    seed_everything(options.seed)
    model = SonicModel.from_pretrained(checkpoint).eval()
    encoders = [str(cfg.use_encoder)] if cfg.get("use_encoder") else list(model.config.encoder_names)
    unknown = [e for e in encoders if e not in model.config.encoder_names]
    if unknown:
        raise SystemExit(f"use_encoder={unknown[0]}: this checkpoint has encoders {list(model.config.encoder_names)}")
    out_dir = checkpoint / "eval"
    all_metrics = {}
    for encoder in encoders:
        env = build_env(cfg, options.seed, "cpu", num_local_processes=1, eval_mode=True)
        report = evaluate_policy(env, model, encoder, show_progress=sys.stderr.isatty())
        env.close()
        print(report.table(), flush=True)
        path = report.write_json(out_dir / f"metrics_{encoder}.json")
        print(f"metrics written to {path}", flush=True)
        all_metrics[encoder] = report.metrics
    summary = out_dir / "metrics.json"
    tmp = summary.with_name(".metrics.json.tmp")
    tmp.write_text(json.dumps({"checkpoint": str(checkpoint), "config": OmegaConf.to_container(cfg.manager_env.commands.motion.motion_lib_cfg, resolve=True), "metrics": all_metrics}, indent=1))
    os.replace(tmp, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
