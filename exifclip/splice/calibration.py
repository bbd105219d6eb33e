"""What a detection score means: how often authentic photos reach it.

A detection score on its own (the paper's mean patch distance) has no unit:
a score of 0.5 may be typical for one camera and rare for another. A
:class:`ScoreCalibration` holds the scores a model gave to authentic photos
of camera models it never saw in training, made with known settings, and
turns a new score into a **false-alarm rate**: the share of those authentic
photos that scored at least as high. A photo is *flagged* when that rate is
at most the localiser's ``alarm_rate`` (5 % by default); otherwise the
result says nothing was found at that rate, and its mask is only the region
that disagreed most, not a finding.

The calibration travels with the model, as ``score_calibration.json`` in its
directory (``recipes/calibrate_scores.py`` writes it), and applies only to
results made with the settings it records. The file holds one calibration
per localiser mode: a model meant for both modes (distilled for fast mode,
:mod:`exifclip.training.distill`) carries one for exact and one for fast.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CALIBRATION_FILE", "CALIBRATED_SETTINGS", "ScoreCalibration"]

#: The file name of a model's calibration, beside its weights.
CALIBRATION_FILE = "score_calibration.json"
#: Settings of the localiser that change the scores: a calibration holds only where they match.
CALIBRATED_SETTINGS = ("mode", "num_per_dim", "stride", "patch_size", "score_method")


@dataclass(frozen=True)
class ScoreCalibration:
    """Detection scores of authentic photos of unseen cameras, and what they make of a new score.

    Parameters
    ----------
    authentic_scores : array-like of float
        Scores of authentic photos whose camera models the model never saw.
    settings : dict
        The localiser settings the scores were made with (:data:`CALIBRATED_SETTINGS`).
    description : str
        Where the photos came from, for the record.

    Examples
    --------
    >>> cal = ScoreCalibration(np.arange(1, 100) / 100, {"mode": "exact"})
    >>> cal.false_alarm_rate(0.95)   # 5 of 99 authentic scores are >= 0.95
    0.06
    >>> t = cal.threshold(0.05)   # just above 0.95: four authentic scores lie above it
    >>> bool(t > 0.95), cal.false_alarm_rate(t)
    (True, 0.05)
    """

    authentic_scores: Any
    settings: dict = field(default_factory=dict)
    description: str = ""

    def __post_init__(self):
        scores = np.sort(np.asarray(self.authentic_scores, dtype=np.float64).ravel())
        if scores.size < 20 or not np.isfinite(scores).all():
            raise ValueError(f"a calibration needs at least 20 finite authentic scores, got {scores.size}")
        object.__setattr__(self, "authentic_scores", scores)

    @property
    def n(self) -> int:
        """Number of authentic photos behind the calibration."""
        return int(self.authentic_scores.size)

    def false_alarm_rate(self, score: float) -> float:
        """The share of authentic photos scoring at least ``score``, as ``(k + 1) / (n + 1)``.

        The ``+ 1`` (a conservative p-value) keeps the rate above zero: with
        ``n`` photos no rate below ``1 / (n + 1)`` can be claimed.
        """
        k = self.n - int(np.searchsorted(self.authentic_scores, float(score), side="left"))
        return (k + 1) / (self.n + 1)

    def threshold(self, alarm_rate: float) -> float:
        """The lowest score flagged at ``alarm_rate``: ``false_alarm_rate(s) <= alarm_rate`` from it on."""
        if not 0 < alarm_rate < 1:
            raise ValueError(f"alarm_rate must be in (0, 1), got {alarm_rate!r}")
        allowed = int(np.floor(alarm_rate * (self.n + 1))) - 1  # authentic scores allowed at or above
        if allowed < 0:
            return float("inf")
        if allowed >= self.n:
            return float("-inf")
        return float(np.nextafter(self.authentic_scores[self.n - allowed - 1], np.inf))

    def applies_to(self, settings: dict) -> bool:
        """Whether results made with ``settings`` can be read with this calibration."""
        return all(self.settings.get(k) == settings.get(k) for k in CALIBRATED_SETTINGS if k in self.settings)

    def to_dict(self) -> dict:
        return {"authentic_scores": [round(float(s), 8) for s in self.authentic_scores], "settings": self.settings,
                "description": self.description}

    def save(self, directory: str | os.PathLike) -> Path:
        """Write this calibration into a model directory's :data:`CALIBRATION_FILE`.

        It replaces one made in the same ``mode``; calibrations of the other
        mode stay in the file.
        """
        mode = self.settings.get("mode")
        kept = [c for c in self.load_all(directory) if c.settings.get("mode") != mode]
        entries = [c.to_dict() for c in kept] + [self.to_dict()]
        path = Path(directory) / CALIBRATION_FILE
        # one calibration is written as before, so older exifclip versions still read the file
        path.write_text(json.dumps(entries[0] if len(entries) == 1 else {"calibrations": entries}, indent=1) + "\n")
        return path

    @classmethod
    def load_all(cls, directory: str | os.PathLike) -> list[ScoreCalibration]:
        """Every calibration saved in a model directory (none if it has no :data:`CALIBRATION_FILE`)."""
        path = Path(directory) / CALIBRATION_FILE
        if not path.is_file():
            return []
        try:
            data = json.loads(path.read_text())
            entries = data["calibrations"] if isinstance(data, dict) and "calibrations" in data else [data]
            return [cls(e["authentic_scores"], dict(e.get("settings", {})), str(e.get("description", "")))
                    for e in entries]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a valid score calibration ({exc})") from None

    @classmethod
    def load(cls, directory: str | os.PathLike, mode: str | None = None) -> ScoreCalibration | None:
        """The calibration saved in a model directory, or ``None`` if it has none.

        With ``mode``, the one made in that mode when the model has one;
        otherwise the file's first, whose settings still say which score the
        model was calibrated on.

        Examples
        --------
        >>> import tempfile
        >>> directory = tempfile.mkdtemp()
        >>> for mode in ("exact", "fast"):
        ...     _ = ScoreCalibration(np.linspace(0, 1, 20), {"mode": mode}).save(directory)
        >>> [c.settings["mode"] for c in ScoreCalibration.load_all(directory)]
        ['exact', 'fast']
        >>> ScoreCalibration.load(directory, mode="fast").settings
        {'mode': 'fast'}
        """
        calibrations = cls.load_all(directory)
        same_mode = [c for c in calibrations if c.settings.get("mode") == mode]
        return (same_mode or calibrations or [None])[0]
