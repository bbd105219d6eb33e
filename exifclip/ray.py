"""Ray Data engine: localise and embed collections across the cores, GPUs and machines of a Ray cluster.

:func:`localize_dataset` and :func:`embed_dataset` take a
``ray.data.Dataset`` whose rows name images (a ``path`` column, as
``ray.data.from_items([{"path": p} ...])`` makes, or a ``bytes`` column, as
``ray.data.read_binary_files(..., include_paths=True)`` makes) and return a
Dataset of results, one row per image, lazily: write it with
``write_parquet`` or iterate it. Each actor of the pool loads the model once
and runs the same estimator as the local engine
(:class:`~exifclip.splice.localizer.SpliceLocalizer`,
:class:`~exifclip.embedder.ExifPatchEmbedder`) on a batch of images, with
patches batched across them, so both engines give the same scores and masks
(bit for bit on the CPU). With GPU actors the images are decoded by a
separate stage of CPU tasks (``decode_on_cpu``), so the GPUs only embed;
``gpus_per_worker`` can be a fraction to share a GPU between actors.

Per-image pictures (mask, heatmap, overlay) go to any ``pyarrow.fs``
location (``output="s3://bucket/case-17"``, ``"gs://..."``, a local
folder), named by the image's key, and their paths are in the result rows.
They are the local engine's pictures (:mod:`exifclip.viz`): the mask as
stored, the heatmap and overlay upright and at most ``max_side`` pixels.

Needs ``pip install "exifclip[ray]"``. Errors of one image are rows with
``status="failed"`` and the ``error`` naming it; the others go on.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

from .io import DEFAULT_MAX_PIXELS
from .splice.postprocessing import DETECTION_SCORES

__all__ = [
    "LOCALIZE_COLUMNS",
    "SCORE_NAMES",
    "EmbedWorker",
    "LocalizeWorker",
    "PICTURES",
    "decode_batch",
    "embed_dataset",
    "image_key",
    "localize_dataset",
    "localize_schema",
    "require_ray",
]

#: The detection scores of every localize row (``score_NAME`` columns).
SCORE_NAMES = tuple(sorted(DETECTION_SCORES))


def require_ray():
    """The ``ray`` module, or an ImportError that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - the engine's half of ray, checked now
    except ImportError:
        raise ImportError('the Ray engine needs Ray Data: pip install "exifclip[ray]"') from None
    return ray


def image_key(path: str | None, data: bytes | None) -> str:
    """A stable, file-name-safe name for an image's outputs: its stem and a hash of its path or bytes.

    Examples
    --------
    >>> image_key("/case/DSC_0001.JPG", None)[:9]
    'DSC_0001-'
    >>> image_key(None, b"abc")
    'ba7816bf8f01cfea'
    """
    if path:
        stem = os.path.splitext(os.path.basename(path))[0] or "image"
        return f"{stem}-{hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:10]}"
    return hashlib.sha256(data or b"").hexdigest()[:16]


def _filesystem(output: str | None):
    """(pyarrow file system, root path) of ``output``; a local folder is made absolute."""
    if output is None:
        return None, None
    import pyarrow.fs as pafs

    uri = output if "://" in output else os.path.abspath(output)
    fs, root = pafs.FileSystem.from_uri(uri)
    fs.create_dir(root, recursive=True)
    return fs, root.rstrip("/")


def _put(fs, root: str, name: str, data: bytes) -> str:
    """Write ``data`` as ``root/name`` so that a reader sees it whole (a temporary name, then moved)."""
    target = f"{root}/{name}"
    temporary = f"{root}/.{name}.part"
    with fs.open_output_stream(temporary) as f:
        f.write(data)
    fs.move(temporary, target)
    return target


def _identify(batch: dict) -> tuple[list, list[str], list[str], dict[int, str]]:
    """A batch's images (arrays if decoded, else bytes or paths), names, keys, and failures so far."""
    if "image" in batch:  # decoded by the CPU stage
        errors = {i: str(e) for i, e in enumerate(batch["decode_error"]) if e}
        return list(batch["image"]), [str(n) for n in batch["source"]], [str(k) for k in batch["key"]], errors
    paths = [str(p) for p in batch["path"]] if "path" in batch else [None] * len(batch["bytes"])
    sources = [bytes(b) for b in batch["bytes"]] if "bytes" in batch else paths
    keys = [image_key(p, s if p is None else None) for s, p in zip(sources, paths)]
    return sources, [p or k for p, k in zip(paths, keys)], keys, {}


def decode_batch(batch: dict, load_options: dict | None = None) -> dict:
    """The CPU stage: a batch of paths or bytes decoded to arrays, with each failure's message.

    Rows keep their ``source`` name and ``key``; a row that failed holds a
    1x1 placeholder and its ``decode_error``, so the embedding stage reports
    it by name and goes on.
    """
    from .batch import ITEM_ERRORS
    from .io import load_image

    from .report.thumbnails import orientation_of

    sources, names, keys, _ = _identify(batch)
    images = np.empty(len(sources), dtype=object)
    errors, orientations = [], []
    for i, (source, name) in enumerate(zip(sources, names)):
        orientations.append(orientation_of(source))
        try:
            images[i] = load_image(source, **(load_options or {}))
            errors.append("")
        except ITEM_ERRORS as exc:
            images[i] = np.zeros((1, 1, 3), np.uint8)
            message = str(exc) or type(exc).__name__
            errors.append(message if message.startswith(name) else f"{name}: {message}")
    return {"source": np.asarray(names, dtype=object), "key": np.asarray(keys, dtype=object), "image": images,
            "decode_error": np.asarray(errors, dtype=object), "orientation": np.asarray(orientations, np.int64)}


def _run(call, sources: list, names: list[str], failed: dict[int, str], failures) -> tuple[list, dict[int, str]]:
    """``call`` on the sources not failed yet; results aligned with ``sources`` and every failure by index."""
    todo = [i for i in range(len(sources)) if i not in failed]
    results: list = [None] * len(sources)
    if todo:
        for i, result in zip(todo, call([sources[i] for i in todo])):
            results[i] = result
        for f in failures():
            failed[todo[f.index]] = f"{names[todo[f.index]]}: {f.reason}"
    return results, failed


class _Worker:
    """What both engines' actors share: the estimator, made once, and where pictures go."""

    def __init__(self, estimator: Any, output: str | None):
        self.estimator = estimator.fit()
        self.fs, self.root = _filesystem(output)

    def failures(self) -> list:
        return self.estimator.failures_


class LocalizeWorker(_Worker):
    """A Ray Data actor: a batch of images in, a batch of localize rows out (model loaded once)."""

    def __init__(self, params: dict, output: str | None = None, pictures: tuple = ("mask",), vmax: float = 1.0,
                 max_side: int | None = None):
        from .splice.localizer import SpliceLocalizer

        super().__init__(SpliceLocalizer(**{**params, "errors": "skip", "progress": False}), output)
        self.pictures, self.vmax, self.max_side = tuple(pictures), vmax, max_side or None
        self.load_options = _load_options(params)

    def _pictures(self, key: str, result, image, orientation: int) -> dict[str, str | None]:
        from .viz import heatmap_picture, mask_picture, overlay_picture, png_bytes

        paths: dict[str, str | None] = {f"{kind}_path": None for kind in PICTURES}
        if self.fs is None:
            return paths
        draw = {  # what exifclip localize writes (exifclip.cli.localize.write_pictures)
            "mask": lambda: mask_picture(result.mask),
            "heatmap": lambda: heatmap_picture(result.heatmap, vmax=self.vmax, max_side=self.max_side,
                                               orientation=orientation),
            "overlay": lambda: overlay_picture(image, result.heatmap, result.mask, vmax=self.vmax,
                                               max_side=self.max_side, orientation=orientation),
        }
        for kind in PICTURES:
            if kind in self.pictures:
                paths[f"{kind}_path"] = _put(self.fs, self.root, f"{key}_{kind}.png", png_bytes(draw[kind]()))
        return paths

    def __call__(self, batch: dict) -> dict:
        if "overlay" in self.pictures and self.fs is not None and "image" not in batch:
            batch = decode_batch(batch, self.load_options)  # the overlay draws the photo: decode it here, once
        sources, names, keys, failed = _identify(batch)
        orientations = _orientations(batch, sources, wanted=bool({"heatmap", "overlay"} & set(self.pictures)))
        results, failed = _run(lambda xs: list(self.estimator.iter_localize(xs)), sources, names, failed,
                               self.failures)
        rows = []
        for i, (name, key, result) in enumerate(zip(names, keys, results)):
            row = {"source": name, "key": key, "status": "ok" if result is not None else "failed",
                   "error": failed.get(i, "failed") if result is None else None}
            row.update(_result_columns(result))
            row.update(self._pictures(key, result, sources[i], orientations[i]) if result is not None else
                       {f"{kind}_path": None for kind in PICTURES})
            rows.append(row)
        return _columns(rows)


def _load_options(params: dict) -> dict:
    """How the estimator with ``params`` decodes images (for decoding outside it)."""
    return {"allow_truncated": bool(params.get("allow_truncated", False)),
            "max_pixels": params.get("max_pixels", DEFAULT_MAX_PIXELS)}


def _orientations(batch: dict, sources: list, wanted: bool) -> list[int]:
    """Each image's EXIF orientation (pictures for people are drawn upright); 1 when not wanted."""
    if "orientation" in batch:
        return [int(o) for o in batch["orientation"]]
    if not wanted:
        return [1] * len(sources)
    from .report.thumbnails import orientation_of

    return [orientation_of(s) if isinstance(s, (str, bytes)) else 1 for s in sources]


def _result_columns(result) -> dict:
    """The row's values from a result (``None`` everywhere for a failed image)."""
    if result is None:
        return {name: None for name in LOCALIZE_COLUMNS if name not in _ROW_ID}
    return {
        "score": float(result.score),
        **{f"score_{n}": float(result.scores[n]) if n in result.scores else None for n in SCORE_NAMES},
        "false_alarm_rate": None if result.false_alarm_rate is None else float(result.false_alarm_rate),
        "flagged": None if result.flagged is None else bool(result.flagged),
        "mask_fraction": float(result.mask.mean()),
        "grid_rows": result.grid.n_rows, "grid_cols": result.grid.n_cols,
        "patch_size": result.grid.patch_size, "stride": result.grid.stride,
        "embed_s": result.timings.get("embed_s"), "postprocess_s": result.timings.get("postprocess_s"),
    }


#: The pictures a localize row can point to (``KIND_path`` columns).
PICTURES = ("mask", "heatmap", "overlay")
_ROW_ID = ("source", "key", "status", "error", *(f"{kind}_path" for kind in PICTURES))
#: Column name -> ``pyarrow`` type name of a localize row (every batch the same; failed rows hold nulls).
LOCALIZE_COLUMNS = {
    "source": "string", "key": "string", "status": "string", "error": "string", "score": "float64",
    **{f"score_{n}": "float64" for n in SCORE_NAMES}, "false_alarm_rate": "float64", "flagged": "bool_",
    "mask_fraction": "float64", "grid_rows": "int32", "grid_cols": "int32", "patch_size": "int32",
    "stride": "int32", "embed_s": "float64", "postprocess_s": "float64",
    **{f"{kind}_path": "string" for kind in PICTURES},
}


def localize_schema():
    """The ``pyarrow.Schema`` of :data:`LOCALIZE_COLUMNS`.

    Examples
    --------
    >>> localize_schema().field("score").type  # doctest: +SKIP
    DataType(double)
    """
    import pyarrow as pa

    return pa.schema([(name, getattr(pa, kind)()) for name, kind in LOCALIZE_COLUMNS.items()])


def _columns(rows: list[dict]):
    """Rows as an Arrow table of the localize schema: every batch the same types."""
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=localize_schema())


class EmbedWorker(_Worker):
    """A Ray Data actor: a batch of images in, their image embeddings out (model loaded once)."""

    def __init__(self, params: dict):
        from .embedder import ExifPatchEmbedder

        super().__init__(ExifPatchEmbedder(**{**params, "errors": "skip", "progress": False}), None)

    def __call__(self, batch: dict) -> dict:
        import pyarrow as pa

        sources, names, keys, failed = _identify(batch)
        rows, failed = _run(lambda xs: list(self.estimator.transform(xs)), sources, names, failed, self.failures)
        missing = np.full(self.estimator.embedding_dim_, np.nan, np.float32)
        Z = np.stack([missing if i in failed or row is None else row for i, row in enumerate(rows)])
        return pa.table({
            "source": pa.array(names, pa.string()),
            "key": pa.array(keys, pa.string()),
            "status": pa.array(["failed" if i in failed else "ok" for i in range(len(keys))], pa.string()),
            "error": pa.array([failed.get(i) for i in range(len(keys))], pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(Z.astype(np.float32).reshape(-1)), Z.shape[1]),
        })


def _map(ds, worker: type, constructor_kwargs: dict, num_workers: int, gpus_per_worker: float,
         images_per_batch: int, decode_on_cpu: bool | None):
    ray = require_ray()
    if not isinstance(ds, ray.data.Dataset):
        raise TypeError(f"expected a ray.data.Dataset, got {type(ds).__name__}")
    columns = set(ds.columns() or [])
    if not columns & {"path", "bytes"}:
        raise ValueError(f"the dataset needs a 'path' or a 'bytes' column, has {sorted(columns)}")
    if num_workers < 1 or images_per_batch < 1:
        raise ValueError(f"num_workers and images_per_batch must be positive, got {num_workers}, {images_per_batch}")
    if decode_on_cpu is None:
        decode_on_cpu = gpus_per_worker > 0
    if decode_on_cpu:
        load_options = _load_options(constructor_kwargs["params"])
        ds = ds.map_batches(decode_batch, fn_kwargs={"load_options": load_options}, batch_size=images_per_batch,
                            batch_format="numpy", num_cpus=1)
    return ds.map_batches(
        worker, fn_constructor_kwargs=constructor_kwargs, batch_size=images_per_batch, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=num_workers), num_gpus=gpus_per_worker or None,
    )


def localize_dataset(ds, *, output: str | None = None, pictures: tuple = ("mask",), num_workers: int = 1,
                     gpus_per_worker: float = 0, images_per_batch: int = 16, vmax: float = 1.0,
                     max_side: int | None = None, decode_on_cpu: bool | None = None, **params):
    """Localise every image of a Ray Dataset on a pool of actors.

    Parameters
    ----------
    ds : ray.data.Dataset
        With a ``path`` column (files every worker can read) or a ``bytes``
        column (the encoded images; a ``path`` column beside it names them).
    output : str, optional
        Where per-image pictures go: a ``pyarrow.fs`` URI or a local folder.
        ``None``: no pictures, the rows only.
    pictures : tuple of {"mask", "heatmap", "overlay"}, default=("mask",)
        Which pictures to write to ``output``: those of ``exifclip
        localize`` (the overlay needs the decoded photo: an actor without a
        decoding stage before it decodes its batch itself, holding its
        decoded photos at once).
    num_workers : int, default=1
        Actors, each holding the model once.
    gpus_per_worker : float, default=0
        GPUs per actor (0: CPU; a fraction shares a GPU).
    images_per_batch : int, default=16
        Images handed to an actor at a time (their patches share batches).
    vmax : float, default=1.0
        Heatmap value drawn brightest.
    max_side : int, optional
        Longer side of the heatmap and overlay pictures at most (``None``:
        full resolution; ``exifclip localize`` passes its ``--max-side``).
    decode_on_cpu : bool, optional
        Decode the images in a stage of CPU tasks before the actors
        (:func:`decode_batch`), so GPU actors only embed; the decoded pixels
        travel through Ray's object store. Default: when ``gpus_per_worker``
        is set. Otherwise each actor decodes its own batch (on a GPU actor,
        in a thread while the GPU embeds).
    **params
        :class:`~exifclip.splice.localizer.SpliceLocalizer` parameters
        (``model``, ``stride``, ``method``, ``device``, ...).

    Returns
    -------
    ray.data.Dataset
        One row per image: ``source``, ``key``, ``status``, ``error``,
        ``score``, ``score_NAME`` for each of :data:`SCORE_NAMES`,
        ``false_alarm_rate``, ``flagged``, ``mask_fraction``, ``grid_rows``,
        ``grid_cols``, ``patch_size``, ``stride``, ``embed_s``,
        ``postprocess_s``, ``mask_path``, ``heatmap_path``, ``overlay_path``.

    Examples
    --------
    >>> import ray  # doctest: +SKIP
    >>> ds = ray.data.from_items([{"path": p} for p in paths])  # doctest: +SKIP
    >>> rows = localize_dataset(ds, model="exifclip-small", output="s3://bucket/case")  # doctest: +SKIP
    >>> rows.write_parquet("s3://bucket/rows")  # doctest: +SKIP
    """
    unknown = set(pictures) - set(PICTURES)
    if unknown:
        raise ValueError(f"pictures must be among {PICTURES}, got {sorted(unknown)}")
    if max_side is not None and max_side < 0:
        raise ValueError(f"max_side must be positive (None or 0: full resolution), got {max_side}")
    kwargs = {"params": params, "output": output, "pictures": tuple(pictures), "vmax": vmax, "max_side": max_side}
    return _map(ds, LocalizeWorker, kwargs, num_workers, gpus_per_worker, images_per_batch, decode_on_cpu)


def embed_dataset(ds, *, num_workers: int = 1, gpus_per_worker: float = 0, images_per_batch: int = 16,
                  decode_on_cpu: bool | None = None, **params):
    """Embed every image of a Ray Dataset on a pool of actors.

    Parameters
    ----------
    ds : ray.data.Dataset
        With a ``path`` or a ``bytes`` column, as for :func:`localize_dataset`.
    num_workers, gpus_per_worker, images_per_batch, decode_on_cpu
        As for :func:`localize_dataset`.
    **params
        :class:`~exifclip.embedder.ExifPatchEmbedder` parameters.

    Returns
    -------
    ray.data.Dataset
        One row per image: ``source``, ``key``, ``status``, ``error`` and
        ``embedding`` (float32; NaN where the image failed).

    Examples
    --------
    >>> embed_dataset(ray.data.from_items([{"path": p} for p in paths])).to_pandas()  # doctest: +SKIP
    """
    return _map(ds, EmbedWorker, {"params": params}, num_workers, gpus_per_worker, images_per_batch,
                decode_on_cpu)
