"""ONNX export per modality with machine-readable layout files (see `onnx_export`)."""

from gear_sonic.export.onnx_export import (
    OPSET,
    ExportResult,
    VerifyResult,
    export_kinds,
    export_onnx,
    input_slices,
    layout_document,
    random_obs_dict,
    torch_reference,
    verify_onnx_file,
)

__all__ = [
    "OPSET", "ExportResult", "VerifyResult", "export_kinds", "export_onnx", "input_slices", "layout_document", "random_obs_dict",
    "torch_reference", "verify_onnx_file",
]
