"""The README's main job: a short CPU training run on the bundled sample data, then evaluation and ONNX export.

    python -m gear_sonic.cli.quickstart [--iterations N] [--num-envs N] [--logs-dir DIR] [extra hydra overrides...]

Each step is the same code path as the user-facing commands (train_agent_trl.py, eval_agent_trl.py).
"""

from __future__ import annotations

import argparse
import json
import time

from gear_sonic.cli import evaluate, train

EXPERIMENT = "+exp=manager/universal_token/all_modes/sonic_cpu"
DEFAULT_ITERATIONS = 100


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gear_sonic.cli.quickstart", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS, help="PPO iterations of the sonic_cpu preset")
    parser.add_argument("--num-envs", type=int, default=None, help="envs (default: the preset's)")
    parser.add_argument("--logs-dir", default="logs_rl", help="where the run folder goes")
    args, extra = parser.parse_known_args(argv)

    overrides = [EXPERIMENT, "headless=True", "use_wandb=false", f"logs_dir={args.logs_dir}",
                 f"++algo.config.num_learning_iterations={args.iterations}", *extra]
    if args.num_envs:
        overrides.append(f"num_envs={args.num_envs}")
    print(f"[1/3] training: python gear_sonic/train_agent_trl.py {' '.join(overrides)}", flush=True)
    t0 = time.perf_counter()
    run_dir = train.run(overrides)
    checkpoint = run_dir / "last"
    t1 = time.perf_counter()

    eval_args = [f"+checkpoint={checkpoint}", "+headless=True", "++eval_callbacks=im_eval", "++num_envs=17",
                 "+manager_env/terminations=tracking/eval"]
    print(f"[2/3] evaluating: python gear_sonic/eval_agent_trl.py {' '.join(eval_args)}", flush=True)
    evaluate.main(eval_args)
    t2 = time.perf_counter()

    export_args = [f"+checkpoint={checkpoint}", "+headless=True", "++num_envs=1", "+export_onnx_only=true"]
    print(f"[3/3] exporting ONNX: python gear_sonic/eval_agent_trl.py {' '.join(export_args)}", flush=True)
    status = evaluate.main(export_args)
    t3 = time.perf_counter()

    resolved = checkpoint.resolve()
    metrics = json.loads((resolved / "eval" / "metrics.json").read_text())["metrics"]
    print("\nsummary")
    print(f"  run folder     {run_dir}  (training {t1 - t0:.0f} s, evaluation {t2 - t1:.0f} s, export {t3 - t2:.0f} s)")
    print(f"  checkpoint     {checkpoint} -> {resolved.name}  (SonicModel.from_pretrained works on it)")
    print(f"  metrics        {run_dir / 'metrics.jsonl'}, curve {run_dir / 'learning_curve.png'}")
    for encoder, m in metrics.items():
        print(f"  eval[{encoder:<6}] success_rate={m['success_rate']:.3f} mpjpe_l={m['mpjpe_l']:.1f} mm "
              f"mpjpe_g={m['mpjpe_g']:.1f} mm  ({resolved / 'eval' / f'metrics_{encoder}.json'})")
    print(f"  ONNX           {resolved / 'exported'}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
