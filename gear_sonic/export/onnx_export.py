"""ONNX export of a `SonicModel`: one file per modality plus the combined encoder and the decoder.

Every file has one float32 input `obs_dict` (B, D) with a dynamic batch and one output (`action`
or `encoded_tokens`); next to each file a `<file>.layout.json` names every slice of `obs_dict`
(group, term, offset, width, frames, units) from `gear_sonic.layout`, so deployment code never
guesses widths or orders. The FSQ appears in the graph as tanh bound -> round -> rescale.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from gear_sonic.layout import TOKENIZER_GROUPS, group
from gear_sonic.layout import observations as layout_module
from gear_sonic.model import SonicModel
from gear_sonic.robots import g1

OPSET = 13
LAYOUT_FORMAT = "gear_sonic.onnx_layout"
LAYOUT_VERSION = 1
# Ops that would mean codebook indices or data-dependent indexing crept into the graph.
FORBIDDEN_OPS = frozenset({"Gather", "GatherElements", "GatherND", "ArgMax", "ArgMin", "TopK", "ScatterND", "ScatterElements"})


class ModalityPolicy(nn.Module):
    """`*_<encoder>.onnx`: [encoder inputs | proprioception] -> action means."""

    def __init__(self, model: SonicModel, encoder: str):
        super().__init__()
        self.encoder = model.encoders[encoder]
        self.quantizer = model.quantizer
        self.decoder = model.decoder
        self.encoder_width = TOKENIZER_GROUPS[encoder].width

    def forward(self, obs_dict: torch.Tensor) -> torch.Tensor:
        token = self.quantizer.quantize_export(self.encoder(obs_dict[:, : self.encoder_width]))
        return self.decoder(torch.cat([token, obs_dict[:, self.encoder_width :]], dim=-1))


class DecoderPolicy(nn.Module):
    """`*_decoder.onnx`: [token 64 | proprioception 930] -> action means."""

    def __init__(self, model: SonicModel):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, obs_dict: torch.Tensor) -> torch.Tensor:
        return self.decoder(obs_dict)


class CombinedEncoder(nn.Module):
    """`*_encoder.onnx`: [encoder index | multi-hot | every encoder's inputs] -> token of the indexed encoder.

    All encoders run; the output is selected with a one-hot weight built by comparison (no Gather).
    The multi-hot slot keeps SONIC's input layout; it does not change the output.
    """

    def __init__(self, model: SonicModel):
        super().__init__()
        self.names = list(model.encoder_names)
        self.encoders = nn.ModuleList([model.encoders[n] for n in self.names])
        self.quantizer = model.quantizer
        self.widths = [TOKENIZER_GROUPS[n].width for n in self.names]

    def forward(self, obs_dict: torch.Tensor) -> torch.Tensor:
        index = obs_dict[:, :1]
        offset = 1 + len(self.names)
        selected = None
        for e, (encoder, width) in enumerate(zip(self.encoders, self.widths)):
            token = self.quantizer.quantize_export(encoder(obs_dict[:, offset : offset + width]))
            weight = ((index - float(e)).abs() < 0.5).to(token.dtype)
            selected = token * weight if selected is None else selected + token * weight
            offset += width
        return selected


def _package_version() -> str:
    try:
        return version("gear_sonic")
    except PackageNotFoundError:
        return "unknown"


def _term_slices(group_name: str, base_offset: int) -> list[dict]:
    return [{"group": group_name, "term": d.pop("name"), **d} for d in group(group_name).describe(base_offset)]


def _token_slice(offset: int, model: SonicModel) -> dict:
    cfg = model.config
    return {
        "group": "token", "term": "token_flattened", "offset": offset, "width": cfg.token_dim,
        "width_per_frame": cfg.token_dim, "frames": 1, "units": "FSQ values in [-1, 1)",
        "description": f"{cfg.num_tokens} tokens x {cfg.fsq_dim} FSQ dims, token-major (e.g. from *_encoder.onnx)",
    }


def input_slices(kind: str, model: SonicModel) -> list[dict]:
    """Every slice of `obs_dict` for one exported file kind: an encoder name, "encoder" or "decoder"."""
    names = list(model.encoder_names)
    if kind == "decoder":
        return [_token_slice(0, model), *_term_slices("proprioception", model.config.token_dim)]
    if kind == "encoder":
        slices = [
            {"group": "routing", "term": "encoder_index", "offset": 0, "width": 1, "width_per_frame": 1, "frames": 1,
             "units": "index", "description": f"which encoder's token to output: 0..{len(names) - 1} = {names}"},
            {"group": "routing", "term": "encoder_active", "offset": 1, "width": len(names),
             "width_per_frame": len(names), "frames": 1, "units": "multi-hot",
             "description": f"active encoders {names}; kept for SONIC's layout, does not change the output"},
        ]
        offset = 1 + len(names)
        for name in names:
            slices += _term_slices(name, offset)
            offset += TOKENIZER_GROUPS[name].width
        return slices
    if kind in names:
        width = TOKENIZER_GROUPS[kind].width
        return [*_term_slices(kind, 0), *_term_slices("proprioception", width)]
    raise ValueError(f"unknown export kind '{kind}'; this model has encoders {names} plus 'encoder' and 'decoder'")


def _action_output(model: SonicModel) -> dict:
    return {
        "name": "action", "dtype": "float32", "shape": ["batch", model.config.action_dim],
        "joint_names": list(g1.JOINT_NAMES_MUJOCO),
        "units": "normalised action; joint position target q = default_joint_pos_rad + action * action_scale",
        "default_joint_pos_rad": [float(x) for x in g1.DEFAULT_JOINT_POS_RAD],
        "action_scale": [float(x) for x in g1.ACTION_SCALE],
    }


def layout_document(kind: str, file_name: str, model: SonicModel) -> dict:
    """The machine-readable description written next to each ONNX file."""
    slices = input_slices(kind, model)
    width = sum(s["width"] for s in slices)
    if kind == "encoder":
        output = {"name": "encoded_tokens", "dtype": "float32", "shape": ["batch", model.config.token_dim],
                  "units": "FSQ values in [-1, 1)", "num_tokens": model.config.num_tokens,
                  "fsq_levels": list(model.config.fsq_levels)}
    else:
        output = _action_output(model)
    return {
        "format": LAYOUT_FORMAT,
        "version": LAYOUT_VERSION,
        "gear_sonic_version": _package_version(),
        "file": file_name,
        "kind": kind,
        "opset": OPSET,
        "encoder_names": list(model.encoder_names),
        "preset": model.config.preset,
        "conventions": " ".join((layout_module.__doc__ or "").split()),
        "inputs": [{"name": "obs_dict", "dtype": "float32", "shape": ["batch", width], "slices": slices}],
        "outputs": [output],
    }


@dataclass
class ExportResult:
    """Paths written by `export_onnx` and, when verified, per file the largest |onnxruntime - torch|
    and the number of verification rows set aside because a token value lay on a rounding boundary."""

    onnx_files: dict[str, Path] = field(default_factory=dict)
    layout_files: dict[str, Path] = field(default_factory=dict)
    max_abs_error: dict[str, float] = field(default_factory=dict)
    boundary_rows: dict[str, int] = field(default_factory=dict)
    verified_rows: dict[str, int] = field(default_factory=dict)


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_module(module: nn.Module, input_width: int, output_name: str, path: Path) -> None:
    """Trace `module` to an opset-13 ONNX file with a dynamic batch, written atomically."""
    module = module.eval()
    example = torch.zeros(2, input_width)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.onnx", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is the one that emits opset 13
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # FSQ constants are meant to be baked in
            torch.onnx.export(
                module, (example,), tmp, dynamo=False, opset_version=OPSET,
                input_names=["obs_dict"], output_names=[output_name],
                dynamic_axes={"obs_dict": {0: "batch"}, output_name: {0: "batch"}},
            )
        proto = onnx.load(tmp)
        onnx.checker.check_model(proto)
        bad = sorted({n.op_type for n in proto.graph.node} & FORBIDDEN_OPS)
        if bad:
            raise RuntimeError(f"{path}: exported graph contains index ops {bad}")
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def export_kinds(model: SonicModel) -> list[str]:
    return [*model.encoder_names, "encoder", "decoder"]


def export_onnx(
    model: SonicModel,
    output_dir: str | Path,
    prefix: str = "sonic",
    verify: bool = True,
    verify_batch_sizes: tuple[int, ...] = (1, 64),
) -> ExportResult:
    """Write `<prefix>_<g1|teleop|smpl|soma|encoder|decoder>.onnx` and their layout files to `output_dir`.

    With `verify`, every file is run in onnxruntime on random inputs at each batch size and compared
    with the model's own torch paths; the largest absolute difference is returned per file.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    result = ExportResult()
    for kind in export_kinds(model):
        file_name = f"{prefix}_{kind}.onnx"
        doc = layout_document(kind, file_name, model)
        width = doc["inputs"][0]["shape"][1]
        if kind == "decoder":
            module, output_name = DecoderPolicy(model), "action"
        elif kind == "encoder":
            module, output_name = CombinedEncoder(model), "encoded_tokens"
        else:
            module, output_name = ModalityPolicy(model, kind), "action"
        onnx_path = output_dir / file_name
        export_module(module, width, output_name, onnx_path)
        layout_path = output_dir / f"{file_name}.layout.json"
        _atomic_write_bytes(layout_path, (json.dumps(doc, indent=2) + "\n").encode())
        result.onnx_files[kind], result.layout_files[kind] = onnx_path, layout_path
        if verify:
            checks = [verify_onnx_file(model, kind, onnx_path, batch, seed=batch) for batch in verify_batch_sizes]
            result.max_abs_error[kind] = max(c.max_abs_error for c in checks)
            result.boundary_rows[kind] = sum(c.boundary_rows for c in checks)
            result.verified_rows[kind] = sum(c.compared_rows for c in checks)
    return result


def random_obs_dict(model: SonicModel, kind: str, batch: int, generator: torch.Generator) -> torch.Tensor:
    """A random `obs_dict` for one file kind; for the combined encoder the index and multi-hot are valid."""
    width = sum(s["width"] for s in input_slices(kind, model))
    x = torch.randn(batch, width, generator=generator)
    if kind == "encoder":
        num = len(model.encoder_names)
        index = torch.randint(0, num, (batch,), generator=generator)
        x[:, 0] = index.float()
        x[:, 1 : 1 + num] = torch.nn.functional.one_hot(index, num).float()
    return x


@torch.no_grad()
def torch_reference(model: SonicModel, kind: str, obs_dict: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What the exported file must compute, via the model's own (training-time) code paths, and the
    driving latent per row (None for the decoder, which has no quantiser)."""
    if kind == "decoder":
        return model.decoder(obs_dict), None
    if kind == "encoder":
        names = list(model.encoder_names)
        obs, offset = {}, 1 + len(names)
        for name in names:
            width = TOKENIZER_GROUPS[name].width
            obs[name] = obs_dict[:, offset : offset + width]
            offset += width
        index = obs_dict[:, 0].round().long()
        latents = torch.stack([model.encoders[n](obs[n]) for n in names], dim=1)
        return model.encode_tokens(obs, index), latents[torch.arange(len(index)), index]
    width = TOKENIZER_GROUPS[kind].width
    obs = {kind: obs_dict[:, :width], "proprioception": obs_dict[:, width:]}
    return model.act_inference(obs, kind), model.encoders[kind](obs[kind])


@dataclass
class VerifyResult:
    max_abs_error: float
    compared_rows: int
    boundary_rows: int


def verify_onnx_file(
    model: SonicModel, kind: str, path: Path, batch: int, seed: int = 0, boundary_tol: float = 1e-4
) -> VerifyResult:
    """Max |onnxruntime - torch| of one exported file on a random batch.

    Rows whose driving token has a value within `boundary_tol` level units of a rounding boundary
    are set aside: there a last-bit difference between the two runtimes legitimately selects the
    neighbouring FSQ level (expected for about 1% of random rows); their count is reported.
    """
    import onnxruntime as ort

    generator = torch.Generator().manual_seed(seed)
    obs_dict = random_obs_dict(model, kind, batch, generator)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {"obs_dict": obs_dict.numpy()})
    expected, latent = torch_reference(model, kind, obs_dict)
    if onnx_out.shape != tuple(expected.shape):
        raise RuntimeError(f"{path}: onnxruntime output shape {onnx_out.shape} != torch {tuple(expected.shape)}")
    keep = np.ones(batch, dtype=bool)
    if latent is not None:
        keep = ~model.quantizer.near_rounding_boundary(latent, boundary_tol).numpy()
    diff = np.abs(onnx_out - expected.numpy())[keep]
    return VerifyResult(float(diff.max()) if diff.size else 0.0, int(keep.sum()), int((~keep).sum()))
