"""`python -m gear_sonic.export --checkpoint DIR --output DIR`: ONNX files + layout files for a
`save_pretrained` checkpoint folder (or a run folder holding `last/`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gear_sonic.export.onnx_export import export_onnx
from gear_sonic.model import CheckpointMismatchError, SonicModel
from gear_sonic.model.folders import resolve_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gear_sonic.export", description=__doc__)
    parser.add_argument("--checkpoint", required=True, type=Path, help="save_pretrained folder (config.json + model.safetensors)")
    parser.add_argument("--output", required=True, type=Path, help="directory for the .onnx and .layout.json files")
    parser.add_argument("--prefix", default=None, help="file name prefix (default: the checkpoint folder's name)")
    parser.add_argument("--no-verify", action="store_true", help="skip the onnxruntime-vs-torch check")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest accepted |onnxruntime - torch|")
    args = parser.parse_args(argv)
    try:
        folder = resolve_checkpoint(args.checkpoint)
        model = SonicModel.from_pretrained(folder)
    except (FileNotFoundError, CheckpointMismatchError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    prefix = args.prefix or folder.resolve().name
    result = export_onnx(model, args.output, prefix=prefix, verify=not args.no_verify)
    failed = False
    for kind, path in result.onnx_files.items():
        line = f"{path}  layout: {result.layout_files[kind].name}"
        if kind in result.max_abs_error:
            err = result.max_abs_error[kind]
            failed |= err > args.tolerance
            line += (f"  max|ort-torch|={err:.2e} over {result.verified_rows[kind]} rows"
                     f" ({result.boundary_rows[kind]} on FSQ rounding boundaries set aside)")
        print(line)
    if failed:
        print(f"error: onnxruntime differs from torch by more than {args.tolerance}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
