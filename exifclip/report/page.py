"""The triage report: one self-contained HTML page for a folder of ``exifclip localize`` results.

The page works offline, opened as a file: its style and script are inline
(``page.css`` and ``page.js`` beside this module, no framework, no CDN), the
thumbnails are embedded as JPEG ``data:`` URIs, and the larger previews and
full-size pictures are files linked relative to the page, so the results
folder can be zipped and shared.

Untrusted text stays text. File names, EXIF values and error messages are
written by whoever made the file. The parts of the page made here are
HTML-escaped; the per-image data travels as JSON inside a non-executable
``<script type="application/json">`` block with ``<``, ``>`` and ``&``
written as ``\\u`` escapes (no sequence in it can close the block), and the
script puts it on the page with ``textContent`` only. A
Content-Security-Policy ``<meta>`` allows no network access (``default-src
'none'``), no script but the page's own (by its SHA-256), no style but its
own, and pictures only from ``data:`` URIs and the page's folder.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .._atomic import atomic_write
from .items import report_item
from .results import load_records
from .thumbnails import scale_bar

__all__ = ["build_report", "content_security_policy", "histogram_svg", "json_for_html"]

_HERE = Path(__file__).parent


def _finite(value):
    """``value`` with every NaN or infinite float replaced by None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def json_for_html(value) -> str:
    """``value`` as JSON that is safe inside ``<script type="application/json">``.

    ``<``, ``>``, ``&`` and the two JavaScript line separators are written as
    ``\\u`` escapes: the text can neither close the block nor open a comment.
    NaN and infinite numbers (a record may hold them) become ``null``.

    Examples
    --------
    >>> json_for_html({"name": "</script><script>alert(1)</script>"})
    '{"name": "\\\\u003c/script\\\\u003e\\\\u003cscript\\\\u003ealert(1)\\\\u003c/script\\\\u003e"}'
    >>> json_for_html({"score": float("nan")})
    '{"score": null}'
    """
    text = json.dumps(_finite(value), ensure_ascii=False, allow_nan=False)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                         ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text


def _sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def content_security_policy(script: str, style: str) -> str:
    """The page's policy: nothing from the network, only this ``script`` and ``style`` (by hash).

    Examples
    --------
    >>> policy = content_security_policy("1;", "b{}")
    >>> policy.split("; ")[0], "connect-src" in policy
    ("default-src 'none'", False)
    """
    return "; ".join([
        "default-src 'none'",
        f"script-src {_sha256_source(script)}",
        f"style-src {_sha256_source(style)}",
        "img-src data: 'self' file:",
        "base-uri 'none'",
        "form-action 'none'",
    ])


def histogram_svg(scores, bins: int = 20, width: int = 480, height: int = 120) -> str:
    """An SVG histogram of detection ``scores`` (numbers only, no input text).

    Examples
    --------
    >>> svg = histogram_svg([0.1, 0.2, 0.2, 0.9])
    >>> svg.startswith("<svg") and svg.count("<rect") == 20
    True
    """
    scores = np.asarray([s for s in scores if isinstance(s, (int, float)) and np.isfinite(s)], float)
    low = min(0.0, float(scores.min())) if scores.size else 0.0
    high = float(scores.max()) if scores.size else 1.0
    high = max(np.ceil(high * 20) / 20, low + 0.05)
    counts, edges = np.histogram(scores, bins=bins, range=(low, high))
    top = max(int(counts.max()) if counts.size else 0, 1)
    bar, plot = width / bins, height - 20
    parts = [f'<svg class="hist" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="histogram of detection scores from {low:.2f} to {high:.2f}">']
    for i, count in enumerate(counts):
        h = plot * count / top
        parts.append(f'<rect x="{i * bar + 1:.1f}" y="{plot - h:.1f}" width="{bar - 2:.1f}" height="{h:.1f}">'
                     f"<title>{edges[i]:.3f} to {edges[i + 1]:.3f}: {count} images</title></rect>")
    parts.append(f'<line x1="0" y1="{plot}" x2="{width}" y2="{plot}"/>')
    parts.append(f'<text x="0" y="{height - 4}">{low:.2f}</text>')
    parts.append(f'<text x="{width}" y="{height - 4}" text-anchor="end">{high:.2f}</text>')
    parts.append(f'<text x="{width / 2}" y="{height - 4}" text-anchor="middle">score (max {top} per bar)</text>')
    parts.append("</svg>")
    return "".join(parts)


def _summary(items: list[dict], results: Path) -> dict:
    ok = [i for i in items if i.get("status") == "ok"]
    first = ok[0] if ok else {}
    return {
        "results": str(results),
        "total": len(items),
        "analysed": len(ok),
        "failed": sum(i.get("status") == "failed" for i in items),
        "not_done": sum(i.get("status") not in ("ok", "failed") for i in items),
        "flagged": sum(bool(i.get("flagged")) for i in ok),
        "metadata_flagged": sum(i.get("flags", 0) > 0 for i in items),
        "models": sorted({str(i.get("model")) for i in ok}),
        "versions": sorted({str(i.get("exifclip_version")) for i in ok if i.get("exifclip_version")}),
        "settings": first.get("settings", {}),
        "scale": first.get("heatmap_scale", [0.0, 1.0]),
    }


def _dl(pairs) -> str:
    rows = "".join(f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(str(v))}</dd>" for k, v in pairs)
    return f"<dl>{rows}</dl>"


def _summary_html(summary: dict, items: list[dict], built: str) -> str:
    from .. import __version__

    counts = _dl([("analysed", summary["analysed"]), ("failed", summary["failed"]),
                  ("not done (interrupted run)", summary["not_done"]),
                  ("flagged by the detector", summary["flagged"]),
                  ("with a metadata red flag", summary["metadata_flagged"])])
    settings = _dl([("models used", ", ".join(summary["models"]) or "none"),
                    ("analysed with exifclip", ", ".join(summary["versions"]) or "not recorded"),
                    *[(k, "default" if v is None else v) for k, v in summary["settings"].items()],
                    ("EXIF consistency", summary.get("exif_consistency", "not computed (--exif-consistency)")),
                    ("results folder", summary["results"]), ("report built", f"{built} by exifclip {__version__}")])
    failures = [i for i in items if i.get("status") != "ok"]
    rows = "".join(f'<li><span class="fname">{html.escape(i["file"])}</span>: '
                   f'{html.escape(str(i.get("error") or i.get("status")))}</li>' for i in failures)
    failed = f'<ol class="failures">{rows}</ol>' if rows else "<p>None.</p>"
    hist = histogram_svg([i.get("score") for i in items if i.get("status") == "ok"])
    return (f'<section class="summary" aria-label="summary"><div><h2>Counts</h2>{counts}</div>'
            f'<div><h2>Detection scores</h2>{hist}</div><div><h2>Model and settings</h2>{settings}</div></section>'
            f'<section id="failures" aria-label="failures"><h2>Failures ({len(failures)})</h2>{failed}</section>')


def _page(title: str, summary_html: str, data: dict) -> str:
    script = (_HERE / "page.js").read_text(encoding="utf-8")
    style = (_HERE / "page.css").read_text(encoding="utf-8")
    template = (_HERE / "page.html").read_text(encoding="utf-8")
    parts = {
        "CSP": html.escape(content_security_policy(script, style), quote=True),
        "TITLE": html.escape(title),
        "STYLE": style,
        "SUMMARY": summary_html,
        "DATA": json_for_html(data),
        "SCRIPT": script,
    }
    # one pass over the template: a placeholder inside inserted text is never expanded
    return re.sub(r"\{\{([A-Z]+)\}\}", lambda m: parts[m.group(1)], template)


def build_report(results: str | os.PathLike, out: str | os.PathLike | None = None, *, title: str | None = None,
                 thumb_side: int = 160, preview_side: int = 768, camera_tables: Mapping | None = None,
                 consistency=None, progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the triage report of the ``exifclip localize`` results folder ``results``.

    Parameters
    ----------
    results : path
        The ``--out`` folder of ``exifclip localize`` (holding ``results.jsonl``).
    out : path, optional
        The HTML file to write (default: ``results/report.html``). Previews go
        to the folder ``<out stem>_files`` beside it.
    title : str, optional
        The page's title (default: the results folder's name).
    thumb_side : int, default 160
        Longer side of the embedded thumbnails, in pixels.
    preview_side : int, default 768
        Longer side of the detail-view previews, in pixels; 0: no preview
        files (the detail view shows the thumbnail).
    camera_tables : mapping, optional
        Known quantisation tables per camera (default: the packaged ones).
    consistency : ExifConsistencyScorer, optional
        A fitted :class:`~exifclip.exif_consistency.ExifConsistencyScorer`:
        each photo with EXIF gets the learned "do these pixels match their
        EXIF?" percentile per tag group (costs one embedding per photo).
    progress : callable, optional
        Called as ``progress(done, total)`` after each image.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    FileNotFoundError, ValueError
        If ``results`` is not a results folder or its records are unreadable (naming it).
    ValueError
        If ``thumb_side`` or ``preview_side`` is not a positive number (0 allowed for previews).

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "results.jsonl").write_text('{"file": "<b>x</b>.jpg", "status": "failed", "error": "bad"}\\n')
    >>> page = build_report(folder).read_text()
    >>> "&lt;b&gt;x&lt;/b&gt;.jpg" in page and "<b>x</b>" not in page
    True
    """
    if not isinstance(thumb_side, int) or thumb_side < 16:
        raise ValueError(f"thumb_side must be a whole number of pixels of at least 16, got {thumb_side!r}")
    if not isinstance(preview_side, int) or preview_side < 0:
        raise ValueError(f"preview_side must be 0 (no previews) or a positive number of pixels, got {preview_side!r}")
    results = Path(results)
    records = load_records(results)
    out = Path(out) if out is not None else results / "report.html"
    files_dir = out.with_name(f"{out.stem}_files") if preview_side else None
    items = []
    for index, record in enumerate(records):
        items.append(report_item(index, record, out, files_dir, out_dir=str(results), thumb_side=thumb_side,
                                 preview_side=preview_side, camera_tables=camera_tables,
                                 consistency=consistency))
        if progress is not None:
            progress(index + 1, len(records))
    built = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    summary = _summary(items, results)
    if consistency is not None:
        summary["exif_consistency"] = f"{type(consistency).__name__}(model={consistency.model!r}, " \
            f"pool of {len(consistency.pool_cameras_[consistency.groups[0]])} EXIF texts)"
    data = {"summary": summary, "items": items, "scale_bar": scale_bar(*summary["scale"])}
    page = _page(title or f"exifclip report: {results.resolve().name}", _summary_html(summary, items, built), data)
    with atomic_write(out, "w") as f:
        f.write(page)
    return out
