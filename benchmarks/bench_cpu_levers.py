"""CPU levers for the image tower, measured in one run: each kept only if it pays.

For ``paper-resnet50`` (random weights) and ``small``, the seconds of one
forward pass of the trunk over a 1024 x 1024 tile (fast mode's unit of work)
and over a batch of 64 patches (exact mode's), for:

* float32, the default;
* ``channels_last`` memory format;
* bfloat16 weights and inputs (``dtype="bfloat16"``; oneDNN uses AMX or
  AVX-512 BF16 where the CPU has them), with the largest difference of the
  embeddings from float32;
* ``torch.compile`` (default backend), compile time apart.

Usage::

    python benchmarks/bench_cpu_levers.py --threads 2 --repeats 3 [--compile]
"""

from __future__ import annotations

import argparse
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
    vision = model.vision_model
    return lambda x: vision.encoder(vision.embedder(x)).last_hidden_state


def measure(arch: str, repeats: int, compile_: bool) -> list[dict]:
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
            bf = model.to(torch.bfloat16)
            xb = x.to(torch.bfloat16)
            row["bf16_s"] = round(_best(lambda: _trunk(bf)(xb), repeats), 3)
            out = _trunk(bf)(xb).float()
            row["bf16_max_rel_diff"] = round(float((out - reference).abs().max() / reference.abs().max()), 4)
            model = model.to(torch.float32)
        if compile_:
            compiled = torch.compile(_trunk(model))
            start = time.perf_counter()
            with torch.inference_mode():
                compiled(x)
                row["compile_first_call_s"] = round(time.perf_counter() - start, 1)
                row["compiled_s"] = round(_best(lambda: compiled(x), repeats), 3)
        row["threads"] = torch.get_num_threads()
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also torch.compile (slow to compile on a CPU)")
    parser.add_argument("--archs", nargs="+", default=["small", "paper-resnet50"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for arch in args.archs:
        measure(arch, args.repeats, args.compile)


if __name__ == "__main__":
    main()
