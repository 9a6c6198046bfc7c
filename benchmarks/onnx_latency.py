"""onnxruntime vs torch eager latency of the exported policy, batch 1, one CPU thread.

Exports a `sonic_release`-sized model (random weights: latency does not depend on their values)
and times, side by side in this run, the decoder (`*_decoder.onnx`, 994 inputs) and the full g1 path
(`*_g1.onnx`: g1 encoder + FSQ + decoder, 1570 inputs) against the same computation in torch eager.
Goal: p99 under 2 ms for the release decoder. Ends with the headline `onnx_decoder_p99_ms=<value>`.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import onnxruntime as ort
import torch

from gear_sonic.export import export_onnx
from gear_sonic.export.onnx_export import DecoderPolicy, ModalityPolicy
from gear_sonic.model import SonicConfig, SonicModel


def interleaved_percentiles_ms(fns, iterations: int, warmup: int) -> list[tuple[float, float]]:
    """(p50, p99) in ms per function; calls alternate so both see the same machine load."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = np.empty((len(fns), iterations))
    for i in range(iterations):
        for k, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            times[k, i] = time.perf_counter() - start
    return [(float(np.percentile(t, 50) * 1e3), float(np.percentile(t, 99) * 1e3)) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="sonic_release")
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = SonicModel(SonicConfig.from_preset(args.preset)).eval()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        result = export_onnx(model, tmp, prefix="bench", verify=False)
        for kind, module in (("decoder", DecoderPolicy(model)), ("g1", ModalityPolicy(model, "g1"))):
            session = ort.InferenceSession(str(result.onnx_files[kind]), options, providers=["CPUExecutionProvider"])
            width = session.get_inputs()[0].shape[1]
            x = torch.randn(1, width)
            feed = {"obs_dict": x.numpy()}
            with torch.inference_mode():
                (ort_p50, ort_p99), (torch_p50, torch_p99) = interleaved_percentiles_ms(
                    [lambda: session.run(None, feed), lambda: module(x)], args.iterations, args.warmup
                )
            rows.append((kind, ort_p50, ort_p99, torch_p50, torch_p99))

    print(f"preset={args.preset} batch=1 threads=1 iterations={args.iterations}")
    print(f"{'path':<8} {'ort p50':>9} {'ort p99':>9} {'torch p50':>10} {'torch p99':>10} {'torch/ort p50':>14}")
    for kind, o50, o99, t50, t99 in rows:
        print(f"{kind:<8} {o50:8.3f}ms {o99:8.3f}ms {t50:9.3f}ms {t99:9.3f}ms {t50 / o50:13.2f}x")
    for kind, o50, o99, t50, t99 in rows:
        print(f"onnx_{kind}_p50_ms={o50:.3f} onnx_{kind}_p99_ms={o99:.3f} torch_{kind}_p50_ms={t50:.3f} torch_{kind}_p99_ms={t99:.3f}")
    print(f"onnx_decoder_p99_ms={rows[0][2]:.3f}")


if __name__ == "__main__":
    main()
