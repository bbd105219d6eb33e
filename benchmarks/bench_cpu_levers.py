"""CPU levers for the image tower, measured in one run: each kept only if it pays.

For ``paper-resnet50`` (random weights) and ``small``, the seconds of one
forward pass of the trunk over a 1024 x 1024 tile (fast mode's unit of work)
and over a batch of 64 patches (exact mode's), for:

* float32, the default;
* ``channels_last`` memory format;
* bfloat16 weights and inputs (``dtype="bfloat16"``; oneDNN uses AMX or
  AVX-512 BF16 where the CPU has them), with the largest difference of the
  embeddings from float32;
* ``torch.compile`` (default backend), compile time apart;
* ONNX Runtime (``--onnx``; ``pip install onnxruntime onnx onnxscript``):
  the trunk exported with ``torch.onnx.export`` for that input shape, run
  by ORT's CPU provider with the same number of intra-op threads, with the
  largest difference from PyTorch's float32 output.

``--photos DIR`` adds the split of the cores between torch's intra-op
threads and a decoding thread: ``SpliceLocalizer().localize`` over the
first ``--n-photos`` JPEGs of ``DIR`` (whole command work: decode, embed,
post-process), exact and fast mode, with 2 torch threads decoding in turn,
and with 1 or 2 torch threads while a thread decodes the next photos
(``exifclip.streaming.DECODE_AHEAD_ON_CPU``); with ``--onnx``, also
``runtime="onnxruntime"`` (2 threads).

Usage::

    python benchmarks/bench_cpu_levers.py --threads 2 --repeats 3 [--compile] [--onnx]
    python benchmarks/bench_cpu_levers.py --archs --photos ../shared/data/digicam --n-photos 12
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np
import torch


def _best(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _trunk(model):
    """The model's trunk (``ExifClipModel.image_trunk``: front-end, stem and stages, no pooling)."""
    return model.image_trunk


class _Trunk(torch.nn.Module):
    """The trunk as a module's forward, to export (a batch of any size, unlike the packaged trunk graph)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.image_trunk(x)


def _onnx_row(model, x: torch.Tensor, reference: torch.Tensor, repeats: int) -> dict:
    """Seconds of ONNX Runtime on the exported trunk, the export's own time, and the largest relative
    difference from PyTorch float32."""
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/trunk.onnx"
        start = time.perf_counter()
        torch.onnx.export(_Trunk(model).eval(), (x,), path, input_names=["x"], output_names=["y"], dynamo=True)
        export_s = time.perf_counter() - start
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        feed = {"x": x.numpy()}
        seconds = _best(lambda: session.run(None, feed), repeats)
        out = torch.from_numpy(session.run(None, feed)[0])
    diff = float((out - reference).abs().max() / reference.abs().max())
    return {"onnx_export_s": round(export_s, 1), "onnxruntime_s": round(seconds, 3),
            "onnx_max_rel_diff": float(f"{diff:.2e}")}


def measure(arch: str, repeats: int, compile_: bool, onnx: bool = False) -> list[dict]:
    from exifclip.modeling import create_model

    model = create_model(arch, seed=0).eval()
    p = model.config.patch_size
    rng = np.random.default_rng(0)
    inputs = {"tile 1024x1024": torch.from_numpy(rng.standard_normal((1, 3, 1024, 1024), dtype=np.float32)),
              f"64 patches of {p} px": torch.from_numpy(rng.standard_normal((64, 3, p, p), dtype=np.float32))}
    rows = []
    for what, x in inputs.items():
        with torch.inference_mode():
            reference = _trunk(model)(x).float()
            row = {"arch": arch, "input": what, "fp32_s": round(_best(lambda: _trunk(model)(x), repeats), 3)}
            cl = model.to(memory_format=torch.channels_last)
            xc = x.contiguous(memory_format=torch.channels_last)
            row["channels_last_s"] = round(_best(lambda: _trunk(cl)(xc), repeats), 3)
            model = model.to(memory_format=torch.contiguous_format)
            bf = copy.deepcopy(model).to(torch.bfloat16)  # a copy: .to() converts in place, and back loses bits
            xb = x.to(torch.bfloat16)
            row["bf16_s"] = round(_best(lambda: _trunk(bf)(xb), repeats), 3)
            out = _trunk(bf)(xb).float()
            row["bf16_max_rel_diff"] = round(float((out - reference).abs().max() / reference.abs().max()), 4)
        if compile_:
            compiled = torch.compile(_trunk(model))
            start = time.perf_counter()
            with torch.inference_mode():
                compiled(x)
                row["compile_first_call_s"] = round(time.perf_counter() - start, 1)
                row["compiled_s"] = round(_best(lambda: compiled(x), repeats), 3)
        if onnx:
            row.update(_onnx_row(model, x, reference, repeats))
        row["threads"] = torch.get_num_threads()
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def thread_split(folder: str, n: int, model: str, runtimes: tuple[str, ...], modes=("exact", "fast"),
                 splits: bool = True) -> list[dict]:
    """Seconds to localise ``n`` photos with each split of the cores between embedding and decoding, and with
    each runtime of the image tower."""
    from pathlib import Path

    import exifclip.streaming as streaming
    from exifclip.splice import SpliceLocalizer

    files = sorted(str(p) for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))[:n]
    settings = [("torch", 2, False), ("torch", 1, True), ("torch", 2, True)] if splits else [("torch", 2, False)]
    settings += [(r, 2, False) for r in runtimes if r != "torch"]
    rows = []
    for mode in modes:
        for runtime, threads, ahead in settings:
            torch.set_num_threads(threads)
            streaming.DECODE_AHEAD_ON_CPU = ahead
            localizer = SpliceLocalizer(model=model, device="cpu", mode=mode, runtime=runtime, errors="raise").fit()
            localizer.localize(files[:1])  # warm-up: model load, kernel selection
            start = time.perf_counter()
            for _ in localizer.iter_localize(files):
                pass
            row = {"model": model, "mode": mode, "runtime": runtime, "photos": len(files), "torch_threads": threads,
                   "decode_ahead": ahead, "seconds": round(time.perf_counter() - start, 2)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    streaming.DECODE_AHEAD_ON_CPU = False
    return rows


def _model_path(name: str) -> str:
    """A packaged model or a directory as given; an architecture name: that architecture, random weights, saved."""
    import tempfile

    from exifclip.modeling.factory import list_architectures

    if name not in list_architectures():
        return name
    from exifclip.modeling import create_model

    folder = tempfile.mkdtemp(prefix=f"{name}-random-")
    create_model(name, seed=0).save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also torch.compile (slow to compile on a CPU)")
    parser.add_argument("--onnx", action="store_true", help="also ONNX Runtime on the exported trunk")
    parser.add_argument("--archs", nargs="*", default=["small", "paper-resnet50"])
    parser.add_argument("--photos", help="a folder of camera JPEGs: also measure the thread split")
    parser.add_argument("--n-photos", type=int, default=12)
    parser.add_argument("--model", default="exifclip-small-s16",
                        help="model of the thread-split runs (an architecture name: random weights)")
    parser.add_argument("--modes", nargs="+", default=["exact", "fast"], choices=["exact", "fast"])
    parser.add_argument("--runtimes-only", action="store_true", help="2 torch threads only, no decoding thread")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for arch in args.archs:
        measure(arch, args.repeats, args.compile, args.onnx)
    if args.photos:
        thread_split(args.photos, args.n_photos, _model_path(args.model), ("torch", "onnxruntime") if args.onnx
                     else ("torch",), args.modes, not args.runtimes_only)


if __name__ == "__main__":
    main()
