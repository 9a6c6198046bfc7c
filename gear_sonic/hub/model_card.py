"""The model card (README.md) written next to a checkpoint's weights on the Hub."""

from __future__ import annotations

from collections.abc import Mapping

from gear_sonic.layout import TOKENIZER_GROUPS, group
from gear_sonic.model import SonicModel

_MODALITY_TEXT = {
    "g1": "robot joint trajectories: 10 future frames 0.1 s apart of joint positions, velocities and pelvis orientation",
    "teleop": "VR three-point tracking (head and both wrists) plus lower-body joint targets",
    "smpl": "SMPL human joint positions (24 joints, 10 frames 0.02 s apart) plus wrist joint targets",
    "soma": "SOMA skeleton joint positions from BVH (26 joints, 10 frames) plus wrist joint targets",
}


def _layout_table(name: str) -> list[str]:
    rows = ["| term | offset | width | frames | units |", "|---|---|---|---|---|"]
    for d in group(name).describe():
        rows.append(f"| `{d['name']}` | {d['offset']} | {d['width']} | {d['frames']} | {d['units']} |")
    return rows


def render_model_card(
    model: SonicModel,
    repo_id: str,
    *,
    metrics: Mapping[str, float] | None = None,
    training_data: str | None = None,
    onnx_prefix: str | None = None,
    license: str = "apache-2.0",
) -> str:
    """Markdown with Hub metadata: architecture, modalities, observation layout, training data,
    metrics (when known), usage and the exported files."""
    cfg = model.config
    counts = model.parameter_counts()
    names = list(model.encoder_names)
    lines = [
        "---",
        "library_name: gear_sonic",
        f"license: {license}",
        "pipeline_tag: reinforcement-learning",
        "tags:",
        *[f"- {t}" for t in ("robotics", "humanoid", "whole-body-control", "motion-tracking", "unitree-g1", "onnx", "gear_sonic")],
        "---",
        "",
        f"# {repo_id.split('/')[-1]}",
        "",
        "A universal-token whole-body controller for the Unitree G1 (29 DoF), in the style of NVIDIA's SONIC: "
        "per-modality motion encoders project through one FSQ quantiser into a shared token, and one decoder "
        "turns token plus proprioception into joint position targets. Built with `gear_sonic` (PPO plus "
        "auxiliary token losses, MuJoCo simulation).",
        "",
        "## Architecture",
        "",
        f"Preset: `{cfg.preset or 'custom'}`. Activation: {cfg.activation}.",
        "",
        "| part | input | hidden layers | output | parameters |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        lines.append(
            f"| encoder `{name}` | {TOKENIZER_GROUPS[name].width} | {cfg.encoder_hidden_dims} | "
            f"{cfg.token_dim} | {counts[f'encoder_{name}']:,} |"
        )
    lines += [
        f"| FSQ quantiser | {cfg.token_dim} | {cfg.num_tokens} tokens x {cfg.fsq_dim} dims, {cfg.fsq_levels[0]} levels"
        f" | {cfg.token_dim} | 0 |",
        f"| action decoder (`g1_dyn`) | {cfg.token_dim} + {group('proprioception').width} | {cfg.decoder_hidden_dims} "
        f"| {cfg.action_dim} | {counts['decoder']:,} |",
        f"| kinematic decoder (`g1_kin`, training only) | {cfg.token_dim} | {cfg.kin_decoder_hidden_dims} | "
        f"{TOKENIZER_GROUPS['g1'].width} | {counts['kin_decoder']:,} |",
        f"| critic (running-normalised input) | {group('critic').width} | {cfg.critic_hidden_dims} | 1 | {counts['critic']:,} |",
        "",
        f"Actor parameters (encoders, decoders, action std): **{counts['actor']:,}**; critic: **{counts['critic']:,}**.",
        f"Gaussian policy with state-independent std (init {cfg.init_action_std}, clamped to "
        f"[{cfg.min_action_std}, {cfg.max_action_std}]). Auxiliary losses: "
        + ", ".join(f"`{k}` x {v}" for k, v in cfg.aux_loss_coefs.items() if k != "align_g1_soma" or "soma" in names)
        + ".",
        "",
        "## Modalities",
        "",
        *[f"- **{n}**: {_MODALITY_TEXT[n]}." for n in names],
        "",
        "Each env samples one driving encoder per episode; a human-motion encoder runs beside the g1 encoder "
        "so their latents can be aligned.",
        "",
        "## Observation layout",
        "",
        "Terms with several frames are stored term-major (all frames of a term, then the next term); joint-indexed "
        "terms use MuJoCo joint order; `rot6d` is the first two columns of a rotation matrix, row-major.",
        "",
    ]
    for name in ["proprioception", *names, "critic"]:
        lines += [f"### `{name}` ({group(name).width})", "", *_layout_table(name), ""]
    lines += ["## Training data", "", training_data or "Not recorded.", "", "## Metrics", ""]
    if metrics:
        lines += ["| metric | value |", "|---|---|", *[f"| {k} | {v:.4g} |" for k, v in metrics.items()], ""]
    else:
        lines += ["Not evaluated yet.", ""]
    prefix = onnx_prefix or "sonic"
    lines += [
        "## Usage",
        "",
        "```python",
        "from gear_sonic.model import SonicModel",
        "",
        f'model = SonicModel.from_pretrained("{repo_id}")',
        '# obs: {"proprioception": (N, 930), "g1": (N, 640), ...} laid out as above',
        'actions = model.act_inference(obs, "g1")  # (N, 29); q_target = default_pose + actions * action_scale',
        "```",
        "",
        "ONNX (one float32 input `obs_dict`, dynamic batch; each file has a `.layout.json` naming every slice):",
        "",
        "```python",
        "import onnxruntime as ort",
        "",
        f'session = ort.InferenceSession("{prefix}_g1.onnx")',
        'action = session.run(None, {"obs_dict": g1_inputs_then_proprioception})[0]',
        "```",
        "",
    ]
    if onnx_prefix is not None:
        lines += ["## Files", "", "| file | input | output |", "|---|---|---|"]
        for name in names:
            lines.append(f"| `{prefix}_{name}.onnx` | {name} inputs + proprioception | `action` |")
        lines += [
            f"| `{prefix}_encoder.onnx` | index, multi-hot, all encoder inputs | `encoded_tokens` |",
            f"| `{prefix}_decoder.onnx` | token + proprioception | `action` |",
            "",
        ]
    return "\n".join(lines)
