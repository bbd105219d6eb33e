"""Do these pixels match their EXIF? The learned check: a photo against the EXIF it claims.

The model embeds a photo's patches and an EXIF sentence in one space, trained
so that a photo lies close to its own camera's text. For a photo that carries
EXIF, the similarity of its image embedding (the mean of its patch
embeddings) to the text of its *claimed* EXIF is compared with its
similarities to the EXIF texts of a reference pool of *other* cameras. The
calibrated result is a percentile: the share of the pool whose EXIF fits the
pixels less well than the claimed one. Near 1: the pixels look like what the
EXIF says; near 0: most other cameras' EXIF fits the pixels better, a reason
to doubt the metadata (swapped, forged, or the pixels re-processed).

The comparison is made per tag group as well: the camera (make, model,
lens), the exposure settings, and the processing (software, white balance,
colour, contrast...). Each group's text holds only its tags, and the pool
entries are written the same way.

How far this can be trusted was measured on camera models the model never
saw in training; see :doc:`/benchmarks` ("EXIF consistency"). Read those
figures before reading a percentile as evidence.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._base import ImageEstimator
from .exif import DEFAULT_TAGS, exif_to_text, read_exif
from .io import DEFAULT_MAX_PIXELS, as_source_list

__all__ = [
    "DEFAULT_POOL_FILE",
    "TAG_GROUPS",
    "ExifConsistencyScorer",
    "camera_of",
    "group_text",
    "load_exif_pool",
    "pool_percentile",
]

#: Tags of each group; ``"all"`` is :data:`exifclip.exif.DEFAULT_TAGS`.
TAG_GROUPS: dict[str, tuple[str, ...]] = {
    "all": DEFAULT_TAGS,
    "camera": ("Make", "Model", "Lens Make", "Lens Model"),
    "exposure": ("Exposure Time", "F-Number", "ISO Speed Ratings", "Focal Length", "Focal Length 35",
                 "Exposure Program", "Exposure Mode", "Exposure Bias Value", "Metering Mode", "Flash",
                 "Max Aperture Value"),
    "processing": ("Software", "White Balance Mode", "White Balance", "Color Space", "Contrast", "Saturation",
                   "Sharpness", "Custom Rendered", "Scene Capture Type", "Gain Control", "Digital Zoom Ratio"),
}

#: The packaged reference pool: the EXIF (camera-pipeline tags only) of the project's training photos.
DEFAULT_POOL_FILE = Path(__file__).with_name("exif_pool.json")


def camera_of(exif: Mapping[str, str]) -> str:
    """``"make|model"`` in lower case with spaces collapsed; ``""`` without a model.

    Examples
    --------
    >>> camera_of({"Make": "Canon ", "Model": "Canon EOS  70D"})
    'canon|canon eos 70d'
    """
    model = " ".join(str(exif.get("Model", "")).split()).lower()
    return f"{' '.join(str(exif.get('Make', '')).split()).lower()}|{model}" if model else ""


def group_text(exif: Mapping[str, str], group: str = "all") -> str:
    """The EXIF sentence of ``group``'s tags only (``""`` when the photo has none of them).

    Examples
    --------
    >>> exif = {"Make": "Canon", "Model": "EOS 70D", "Exposure Time": "1/60", "Software": "GIMP"}
    >>> group_text(exif, "camera"), group_text(exif, "processing")
    ('Make: Canon, Model: EOS 70D', 'Software: GIMP')
    """
    if group not in TAG_GROUPS:
        raise ValueError(f"unknown tag group {group!r}; expected one of {', '.join(TAG_GROUPS)}")
    return exif_to_text(exif, tags=TAG_GROUPS[group])


def pool_percentile(image: np.ndarray, claimed: np.ndarray, pool: np.ndarray) -> float:
    """The share of ``pool`` texts less similar to ``image`` than the ``claimed`` text (ties count half).

    Parameters
    ----------
    image : ndarray (dim,)
        The photo's embedding.
    claimed : ndarray (dim,)
        The embedding of the EXIF text the photo claims.
    pool : ndarray (n, dim)
        Embeddings of other cameras' EXIF texts.

    Returns
    -------
    float
        In [0, 1]; NaN for an empty pool.

    Examples
    --------
    >>> img = np.array([1.0, 0.0])
    >>> pool_percentile(img, np.array([0.9, 0.1]), np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]]))
    0.6666666666666666
    """
    pool = np.asarray(pool, np.float64)
    if pool.shape[0] == 0:
        return float("nan")
    own = float(np.dot(image, claimed))
    others = pool @ np.asarray(image, np.float64)
    return float((np.sum(others < own) + 0.5 * np.sum(others == own)) / len(others))


def load_exif_pool(source: str | os.PathLike | Iterable[Mapping[str, str]] | None = None) -> list[dict[str, str]]:
    """A reference pool of EXIF dicts: the packaged one, a JSON file of them, or the dicts themselves.

    Raises
    ------
    ValueError
        If the file or the list is not a list of EXIF dicts (naming the file or the entry).

    Examples
    --------
    >>> pool = load_exif_pool()
    >>> len(pool) > 100 and all("Model" in e for e in pool)
    True
    >>> load_exif_pool([{"Make": "Acme", "Model": "One"}])
    [{'Make': 'Acme', 'Model': 'One'}]
    """
    name = "the pool"
    if source is None or isinstance(source, (str, os.PathLike)):
        path = Path(source) if source is not None else DEFAULT_POOL_FILE
        name = str(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: cannot read an EXIF pool ({exc})") from None
        source = data.get("pool") if isinstance(data, dict) else data
        if not isinstance(source, list):
            raise ValueError(f"{path}: not an EXIF pool (expected a list of EXIF dicts under 'pool')")
    entries = list(source)
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not all(isinstance(v, str) for v in entry.values()):
            raise ValueError(f"{name}: entry {i} is not an EXIF dict of str to str")
    return [dict(e) for e in entries]


class ExifConsistencyScorer(ImageEstimator):
    """How well a photo's pixels match the EXIF it claims, against a pool of other cameras' EXIF.

    Parameters
    ----------
    model, revision, patch_size, num_per_dim, stride, batch_size, device, dtype, mode, runtime, errors, \
allow_truncated, max_pixels
        As :class:`~exifclip.embedder.ExifPatchEmbedder`.
    pool : str, path, list of dict or None, default=None
        The reference EXIF: None, the packaged pool (the training photos'
        camera-pipeline tags, :data:`DEFAULT_POOL_FILE`); a JSON file; or a
        list of EXIF dicts. ``fit(X)`` with photos replaces it by their EXIF.
    groups : sequence of str, default=("all", "camera", "exposure", "processing")
        Tag groups (:data:`TAG_GROUPS`) to score; each is a column of
        :meth:`transform`.

    Attributes
    ----------
    embedder_ : ExifPatchEmbedder
    pool_cameras_ : dict of str to ndarray of str
        Per group, the camera of each pool entry (entries of the claimed
        camera are left out when a photo is scored).
    pool_embeddings_ : dict of str to ndarray (n, dim)
        Per group, the pool's text embeddings (entries without the group's tags
        dropped; a group no entry has scores NaN).
    failures_ : list of BatchFailure

    Examples
    --------
    >>> import io, tempfile, numpy as np, piexif
    >>> from PIL import Image
    >>> from exifclip.modeling import create_model
    >>> d = tempfile.mkdtemp(); create_model("small", seed=0).save_pretrained(d)
    >>> pool = [{"Make": m, "Model": m + " 1", "Exposure Time": "1/60"} for m in ("Acme", "Bolt", "Crux")]
    >>> scorer = ExifConsistencyScorer(model=d, device="cpu", pool=pool).fit()
    >>> exif = piexif.dump({"0th": {piexif.ImageIFD.Make: b"Dune", piexif.ImageIFD.Model: b"Dune 2"}})
    >>> buf = io.BytesIO()
    >>> Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 96, 3), np.uint8)).save(
    ...     buf, "JPEG", exif=exif)
    >>> scores = scorer.transform([buf.getvalue()])
    >>> scores.shape, bool(0 <= scores[0, 0] <= 1), bool(np.isnan(scores[0, 2]))  # no exposure tags: NaN
    ((1, 4), True, True)
    """

    _parameter_constraints: dict = {
        **ImageEstimator._parameter_constraints,
        "pool": [None, str, os.PathLike, list],
        "groups": [tuple, list],
    }

    def __init__(self, model: str = "exifclip-small", revision: str | None = None, patch_size: int | None = None,
                 num_per_dim: int = 30, stride: int | None = None, batch_size: int = 256, device: str = "auto",
                 dtype: str | None = None, mode: str = "exact", runtime: str = "torch", errors: str = "warn",
                 progress: bool = False,
                 allow_truncated: bool = False, max_pixels: int | None = DEFAULT_MAX_PIXELS, pool: Any = None,
                 groups: Sequence[str] = ("all", "camera", "exposure", "processing")):
        self.model = model
        self.revision = revision
        self.patch_size = patch_size
        self.num_per_dim = num_per_dim
        self.stride = stride
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.mode = mode
        self.runtime = runtime
        self.errors = errors
        self.progress = progress
        self.allow_truncated = allow_truncated
        self.max_pixels = max_pixels
        self.pool = pool
        self.groups = groups

    def fit(self, X: Any = None, y: Any = None) -> ExifConsistencyScorer:
        """Load the model and embed the pool's texts (``X``: photos whose EXIF becomes the pool).

        Raises
        ------
        ValueError
            An unknown group, an unreadable pool, or a pool with no entry for any group.
        """
        from .embedder import ExifPatchEmbedder

        self._validate_params()
        unknown = [g for g in self.groups if g not in TAG_GROUPS]
        if unknown or not self.groups:
            raise ValueError(f"groups must be a non-empty list of {', '.join(TAG_GROUPS)}; got {list(self.groups)}")
        if X is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pool = [read_exif(s) for s in as_source_list(X)]
        else:
            pool = load_exif_pool(self.pool)
        self.embedder_ = ExifPatchEmbedder(**self._embedding_params()).fit()
        self.pool_embeddings_, self.pool_cameras_ = {}, {}
        for group in self.groups:
            kept = [(camera_of(e), group_text(e, group)) for e in pool]
            kept = [(c, t) for c, t in kept if t]
            self.pool_cameras_[group] = np.asarray([c for c, _ in kept], dtype=str)
            self.pool_embeddings_[group] = (self.embedder_.embed_exif([t for _, t in kept]) if kept else
                                            np.zeros((0, self.embedder_.embedding_dim_), np.float32))
        if not any(len(c) for c in self.pool_cameras_.values()):
            raise ValueError(f"the EXIF pool has no entry with tags of the groups {list(self.groups)} "
                             f"({len(pool)} entries)")
        self.embedding_dim_ = self.embedder_.embedding_dim_
        return self

    def transform(self, X: Any, exif: Sequence[Mapping[str, str]] | None = None) -> np.ndarray:
        """Per photo and group, the percentile of the claimed EXIF among the pool (high: consistent).

        Parameters
        ----------
        X : image source or a list of them
        exif : list of dict, optional
            The EXIF each photo claims (default: read from each source; an
            array carries none).

        Returns
        -------
        ndarray of shape (n_images, len(groups)), float
            NaN where the photo failed, carries no EXIF, or none of the
            group's tags.
        """
        check_is_fitted(self, "pool_embeddings_")
        sources = as_source_list(X)
        if exif is not None and len(exif) != len(sources):
            raise ValueError(f"exif: {len(exif)} EXIF dicts for {len(sources)} images")
        images = self.embedder_.transform(sources)
        self.failures_ = self.embedder_.failures_
        if exif is None:
            exif = [self._claimed(s) for s in sources]
        texts = [[group_text(e, g) for g in self.groups] for e in exif]
        flat = sorted({t for row in texts for t in row if t})
        embedded = dict(zip(flat, self.embedder_.embed_exif(flat))) if flat else {}
        out = np.full((len(sources), len(self.groups)), np.nan)
        for i, (image, row, claimed) in enumerate(zip(images, texts, exif)):
            if np.isnan(image).any():
                continue
            keep_camera = camera_of(claimed)
            for j, (group, text) in enumerate(zip(self.groups, row)):
                if text:
                    others = self.pool_cameras_[group] != keep_camera
                    out[i, j] = pool_percentile(image, embedded[text], self.pool_embeddings_[group][others])
        return out

    @staticmethod
    def _claimed(source: Any) -> dict[str, str]:
        if isinstance(source, np.ndarray):
            return {}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return read_exif(source)
        except (ValueError, OSError, TypeError):
            return {}  # the embedder reports the failed image

    def decision_function(self, X: Any) -> np.ndarray:
        """``1 - percentile`` of the first group (``"all"`` by default): high when the EXIF does not fit."""
        return 1.0 - self.transform(X)[:, 0]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """``exif_consistency_<group>`` for each group."""
        check_is_fitted(self, "pool_embeddings_")
        return np.asarray([f"exif_consistency_{g}" for g in self.groups], dtype=object)
