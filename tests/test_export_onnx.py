"""ONNX export: files, widths, layout documents, onnxruntime vs torch at batch 1 and 64, and the
`python -m gear_sonic.export` entry point."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from gear_sonic.export import export_onnx, random_obs_dict, torch_reference, verify_onnx_file
from gear_sonic.export.__main__ import main as export_main
from gear_sonic.layout import PROPRIOCEPTION, TOKENIZER_GROUPS, encoder_union_width, group
from gear_sonic.model import SonicConfig, SonicModel
from gear_sonic.robots import g1

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def release_export(tmp_path_factory):
    torch.manual_seed(0)
    model = SonicModel(SonicConfig.from_preset("sonic_release")).eval()
    out = tmp_path_factory.mktemp("release_onnx")
    return model, out, export_onnx(model, out, prefix="release")


@pytest.fixture(scope="module")
def soma_export(tmp_path_factory):
    torch.manual_seed(1)
    names = ["g1", "teleop", "smpl", "soma"]
    model = SonicModel(SonicConfig.from_preset(
        "sonic_cpu", encoder_names=names, normalize_encoder_inputs=True, normalize_latents=True)).eval()
    # Non-trivial encoder-input statistics, so the exported normalisers are exercised.
    obs = {n: torch.randn(256, group(n).width) * 1.5 + 0.3 for n in [*names, "critic", "proprioception"]}
    model.update_normalizer(obs, encoder_index=torch.arange(256) % len(names))
    assert model.decoder[0].count.item() == 256 and model.encoders["soma"][0].count.item() == 256
    out = tmp_path_factory.mktemp("soma_onnx")
    return model, out, export_onnx(model, out, prefix="small")


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_release_files_widths_and_onnxruntime_agreement(release_export):
    model, out, result = release_export
    names = sorted(p.name for p in out.iterdir())
    kinds = ["g1", "teleop", "smpl", "encoder", "decoder"]
    assert names == sorted([f"release_{k}.onnx" for k in kinds] + [f"release_{k}.onnx.layout.json" for k in kinds])
    widths = {"g1": 640 + 930, "teleop": 267 + 930, "smpl": 840 + 930, "encoder": 1751, "decoder": 994}
    assert encoder_union_width(("g1", "teleop", "smpl")) == 1751
    for kind, width in widths.items():
        proto = onnx.load(str(result.onnx_files[kind]))
        assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [13]
        (inp,), (outp,) = proto.graph.input, proto.graph.output
        assert inp.name == "obs_dict" and outp.name == ("encoded_tokens" if kind == "encoder" else "action")
        dims = inp.type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch" and dims[1].dim_value == width
        assert outp.type.tensor_type.shape.dim[1].dim_value == (64 if kind == "encoder" else 29)
        ops = {n.op_type for n in proto.graph.node}
        assert not ops & {"Gather", "GatherElements", "GatherND", "ArgMax", "TopK"}
        if kind != "decoder":
            assert {"Tanh", "Round"} <= ops  # FSQ as bound -> round -> rescale
        print(f"release {kind}: max|ort-torch| {result.max_abs_error[kind]:.2e} over {result.verified_rows[kind]} rows "
              f"({result.boundary_rows[kind]} rounding-boundary rows set aside)")
        assert result.max_abs_error[kind] < TOLERANCE
        assert result.verified_rows[kind] >= 60  # batch 1 + batch 64, few boundary rows


def test_verification_at_batch_1_and_64_on_every_file(soma_export):
    model, out, result = soma_export
    assert set(result.onnx_files) == {"g1", "teleop", "smpl", "soma", "encoder", "decoder"}
    assert onnx.load(str(result.onnx_files["encoder"])).graph.input[0].type.tensor_type.shape.dim[1].dim_value == \
        encoder_union_width(("g1", "teleop", "smpl", "soma"))
    for kind, path in result.onnx_files.items():
        for batch in (1, 64):
            check = verify_onnx_file(model, kind, path, batch, seed=100 + batch)
            assert check.max_abs_error < TOLERANCE, (kind, batch)
            assert check.compared_rows + check.boundary_rows == batch and check.boundary_rows <= max(1, batch // 10)


def test_encoder_file_selects_the_indexed_token(soma_export):
    model, _, result = soma_export
    session = _session(result.onnx_files["encoder"])
    generator = torch.Generator().manual_seed(7)
    x = random_obs_dict(model, "encoder", 8, generator)
    names = list(model.encoder_names)
    offset = 1 + len(names)
    per_encoder = {}
    for name in names:
        width = TOKENIZER_GROUPS[name].width
        with torch.no_grad():
            per_encoder[name] = model.encode_tokens({name: x[:, offset : offset + width]}, name)
        offset += width
    for e, name in enumerate(names):
        x[:, 0] = float(e)
        got = session.run(None, {"obs_dict": x.numpy()})[0]
        expected = per_encoder[name].numpy()
        agree = np.isclose(got, expected, atol=1e-6).all(axis=1)
        assert agree.mean() >= 0.75, name  # rows on a rounding boundary may differ by one level
        assert np.abs(got - expected).max() <= 1 / 16 + 1e-6
    # Changing another encoder's inputs leaves the selected token unchanged.
    x[:, 0] = 0.0
    base = session.run(None, {"obs_dict": x.numpy()})[0]
    x[:, 1 + len(names) + 640 :] += 5.0
    assert np.array_equal(session.run(None, {"obs_dict": x.numpy()})[0], base)


def test_layout_documents_name_every_slice(soma_export):
    model, out, result = soma_export
    for kind, path in result.layout_files.items():
        doc = json.loads(path.read_text())
        assert doc["file"] == result.onnx_files[kind].name and doc["opset"] == 13 and doc["kind"] == kind
        (inp,) = doc["inputs"]
        width = onnx.load(str(result.onnx_files[kind])).graph.input[0].type.tensor_type.shape.dim[1].dim_value
        assert inp["shape"] == ["batch", width]
        offset = 0
        for s in inp["slices"]:  # contiguous, complete, each term described
            assert s["offset"] == offset and s["width"] == s["width_per_frame"] * s["frames"]
            assert {"group", "term", "units", "description"} <= set(s)
            offset += s["width"]
        assert offset == width
        if kind in TOKENIZER_GROUPS:
            layout = group(kind).describe() + PROPRIOCEPTION.describe(group(kind).width)
            assert [(s["term"], s["offset"], s["width"]) for s in inp["slices"]] == \
                [(d["name"], d["offset"], d["width"]) for d in layout]
        if doc["outputs"][0]["name"] == "action":
            assert doc["outputs"][0]["joint_names"] == list(g1.JOINT_NAMES_MUJOCO)
            assert np.allclose(doc["outputs"][0]["action_scale"], g1.ACTION_SCALE)
    encoder_doc = json.loads(result.layout_files["encoder"].read_text())
    terms = [(s["group"], s["term"]) for s in encoder_doc["inputs"][0]["slices"]]
    assert terms[:2] == [("routing", "encoder_index"), ("routing", "encoder_active")]
    assert [g for g, _ in terms[2:]] == sorted([g for g, _ in terms[2:]], key=["g1", "teleop", "smpl", "soma"].index)


def test_dynamic_batch_and_torch_reference(soma_export):
    model, _, result = soma_export
    session = _session(result.onnx_files["teleop"])
    x = random_obs_dict(model, "teleop", 5, torch.Generator().manual_seed(3))
    expected, _ = torch_reference(model, "teleop", x)
    for rows in (slice(0, 1), slice(0, 5)):
        got = session.run(None, {"obs_dict": x[rows].numpy()})[0]
        np.testing.assert_allclose(got, expected[rows].numpy(), atol=TOLERANCE)


def test_cli_on_a_checkpoint_folder(tmp_path, capsys):
    torch.manual_seed(2)
    model = SonicModel(SonicConfig.from_preset("sonic_cpu"))
    run = tmp_path / "run"
    model.save_pretrained(run / "last")
    assert export_main(["--checkpoint", str(run), "--output", str(tmp_path / "exported")]) == 0
    printed = capsys.readouterr().out
    assert "last_g1.onnx" in printed and "max|ort-torch|" in printed
    assert {p.name for p in (tmp_path / "exported").glob("*.onnx")} == {
        f"last_{k}.onnx" for k in ("g1", "teleop", "smpl", "encoder", "decoder")
    }
    assert not list((tmp_path / "exported").glob(".*"))  # no temporary files left behind
    assert export_main(["--checkpoint", str(tmp_path / "nowhere"), "--output", str(tmp_path / "x")]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_module_entry_point(tmp_path):
    torch.manual_seed(3)
    SonicModel(SonicConfig.from_preset("sonic_cpu")).save_pretrained(tmp_path / "ckpt")
    proc = subprocess.run(
        [sys.executable, "-m", "gear_sonic.export", "--checkpoint", str(tmp_path / "ckpt"), "--output",
         str(tmp_path / "out"), "--prefix", "mine", "--no-verify"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "mine_decoder.onnx").exists() and (tmp_path / "out" / "mine_smpl.onnx.layout.json").exists()
