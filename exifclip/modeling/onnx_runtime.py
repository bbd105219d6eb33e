"""The image tower run by ONNX Runtime on the CPU: the same embeddings, in less time.

Measured on this project's 2-core x86 CPU (``benchmarks/bench_cpu_levers.py
--onnx``, docs/benchmarks.md), ONNX Runtime's CPU provider runs the image
tower 1.45-2.5x faster than PyTorch (float32, channels-last), and its outputs
equal PyTorch's to about 1e-6 relative. ``runtime="onnxruntime"`` on the
estimators (``--runtime onnxruntime`` on the command line; ``pip install
"exifclip[onnx]"``) wraps the loaded model in :class:`OnnxRuntimeModel`:
the image tower's two entry points run in ONNX Runtime, everything else
(the text tower, the configuration, the tokenizer) is the PyTorch model's.

The two graphs are exported from the model with ``torch.onnx.export``
(dynamo exporter), with dynamic batch and image sizes, once per model: they
are kept in a cache folder (``EXIFCLIP_ONNX_CACHE``, else
``~/.cache/exifclip/onnx``) under a hash of the model's configuration and
weights and of the PyTorch version, so a later run loads them in well under
a second. Only files this code wrote are read back (ONNX is a protobuf
graph, not a pickle).
"""

from __future__ import annotations

import os
import tempfile
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["RUNTIMES", "OnnxRuntimeModel", "onnx_cache_dir", "onnx_runtime_model", "require_onnxruntime"]

from .._base import RUNTIMES  # the values of the estimators' ``runtime`` parameter


def require_onnxruntime():
    """The ``onnxruntime`` module, or an ImportError that says how to install what the export needs too."""
    try:
        import onnx  # noqa: F401 - the exporter writes with it
        import onnxruntime
        import onnxscript  # noqa: F401 - the dynamo exporter's op library
    except ImportError:
        raise ImportError('runtime="onnxruntime" needs ONNX Runtime and the exporter: pip install "exifclip[onnx]"') \
            from None
    return onnxruntime


def onnx_cache_dir() -> Path:
    """Where exported graphs are kept: ``EXIFCLIP_ONNX_CACHE``, else ``~/.cache/exifclip/onnx``."""
    return Path(os.environ.get("EXIFCLIP_ONNX_CACHE") or Path.home() / ".cache" / "exifclip" / "onnx")


class _Entry(nn.Module):
    """One of the model's image methods as a module's forward, to export."""

    def __init__(self, model, method: str):
        super().__init__()
        self.model, self.method = model, method

    def forward(self, x):
        return getattr(self.model, self.method)(x)


class OnnxRuntimeModel:
    """A model whose image tower runs in ONNX Runtime; every other attribute is the PyTorch model's.

    Parameters
    ----------
    model : ExifClipModel
        On the CPU, float32, in eval mode.
    cache_dir : path-like, optional
        Where the exported graphs are kept (default :func:`onnx_cache_dir`).
    threads : int, optional
        ONNX Runtime's intra-op threads (default: ``torch.get_num_threads()``).

    Attributes
    ----------
    model : ExifClipModel
    graphs : dict
        ``"features"`` and ``"trunk"``: the paths of the exported graphs.

    Examples
    --------
    >>> from exifclip.modeling.factory import create_model
    >>> fast = OnnxRuntimeModel(create_model("small", seed=0).eval())  # doctest: +SKIP
    >>> fast.get_image_features(torch.zeros(2, 3, 64, 64)).shape  # doctest: +SKIP
    torch.Size([2, 128])
    """

    def __init__(self, model: Any, cache_dir: str | os.PathLike | None = None, threads: int | None = None):
        ort = require_onnxruntime()
        first = next(model.parameters())
        if first.device.type != "cpu" or first.dtype != torch.float32:
            raise ValueError(f'runtime="onnxruntime" runs float32 models on the CPU; this one is {first.dtype} on '
                             f"{first.device} (use device='cpu' and no dtype, or the torch runtime)")
        from ..cache import model_fingerprint

        self.model = model.eval()
        folder = Path(cache_dir) if cache_dir is not None else onnx_cache_dir()
        key = f"{model_fingerprint(model)[:24]}-torch{torch.__version__.split('+')[0]}"
        side = int(model.config.input_size)
        example = torch.zeros(2, 3, side, side)
        tile = torch.zeros(1, 3, 2 * side, 3 * side)
        self.graphs = {
            "features": _export(_Entry(model, "get_image_features"), example, folder / f"{key}-features.onnx",
                                {0: "batch"}),
            "trunk": _export(_Entry(model, "image_trunk"), tile, folder / f"{key}-trunk.onnx",
                             {2: "height", 3: "width"}),
        }
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        self._sessions = {name: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                          for name, path in self.graphs.items()}

    def __getattr__(self, name: str) -> Any:
        if name == "model":  # not set yet (during __init__): no recursion
            raise AttributeError(name)
        return getattr(self.model, name)

    def _run(self, name: str, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(self._sessions[name].run(None, {"x": array})[0])

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """:meth:`ExifClipModel.get_image_features <exifclip.modeling.model.ExifClipModel.get_image_features>`,
        in ONNX Runtime."""
        return self._run("features", pixel_values)

    def image_trunk(self, pixels: torch.Tensor) -> torch.Tensor:
        """:meth:`ExifClipModel.image_trunk <exifclip.modeling.model.ExifClipModel.image_trunk>`, in ONNX
        Runtime."""
        return self._run("trunk", pixels)


def _export(module: nn.Module, example: torch.Tensor, path: Path, dynamic: dict[int, str]) -> Path:
    """``path``, exported from ``module`` unless it is there already (written whole, then renamed)."""
    if path.is_file():
        return path
    import warnings

    path.parent.mkdir(parents=True, exist_ok=True)
    shapes = ({axis: torch.export.Dim(name, min=1 if axis == 0 else 16, max=1 << 16)
               for axis, name in dynamic.items()},)  # by position: the forward's one argument
    with tempfile.TemporaryDirectory(dir=path.parent) as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and torchvision notices
        partial = Path(folder) / path.name
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(module.eval(), (example,), str(partial), input_names=["x"], output_names=["y"],
                              dynamo=True, dynamic_shapes=shapes, external_data=False, verbose=False)
        os.replace(partial, path)
    return path


# (id of the model, cache folder, threads) -> its OnnxRuntimeModel, while something still holds that one (it
# holds the model, so the id cannot be reused meanwhile).
_SHARED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def onnx_runtime_model(model: Any) -> OnnxRuntimeModel:
    """The :class:`OnnxRuntimeModel` of ``model``, made once per model, cache folder and thread count.

    The estimators' clones share one loaded model (:func:`exifclip.modeling.hub.load_model`), so they
    share its ONNX Runtime sessions too, instead of hashing the weights and opening the graphs at every
    ``fit``.

    Examples
    --------
    >>> from exifclip.modeling.factory import create_model
    >>> m = create_model("small", seed=0).eval()
    >>> onnx_runtime_model(m) is onnx_runtime_model(m)  # doctest: +SKIP
    True
    """
    key = (id(model), str(onnx_cache_dir()), torch.get_num_threads())
    shared = _SHARED.get(key)
    if shared is None:
        shared = _SHARED[key] = OnnxRuntimeModel(model)
    return shared
