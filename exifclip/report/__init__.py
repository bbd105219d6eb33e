"""The triage report and the classical metadata red flags.

- :mod:`~exifclip.report.page`: :func:`build_report`, one offline HTML page
  for a folder of ``exifclip localize`` results;
- :mod:`~exifclip.report.items`, :mod:`~exifclip.report.results`,
  :mod:`~exifclip.report.thumbnails`: what the page holds per image, what it
  reads, and the upright pictures it shows;
- :mod:`~exifclip.report.red_flags`, :mod:`~exifclip.report.quantization`:
  the metadata checks an analyst runs first (editing software, thumbnail,
  missing EXIF, dates, JPEG quantisation tables).

Public names are exported lazily (one table, :func:`exifclip._lazy.attach`).
"""

from .._lazy import attach as _attach

_EXPORTS = {
    "build_report": ".page",
    "content_security_policy": ".page",
    "histogram_svg": ".page",
    "json_for_html": ".page",
    "report_item": ".items",
    "relative_link": ".items",
    "load_records": ".results",
    "reproduce_command": ".results",
    "file_sha256": ".results",
    "provenance": ".results",
    "RESULTS_FILE": ".results",
    "MetadataCheck": ".red_flags",
    "metadata_checks": ".red_flags",
    "check_dates": ".red_flags",
    "check_exif_present": ".red_flags",
    "check_quantization": ".red_flags",
    "check_software": ".red_flags",
    "check_thumbnail": ".red_flags",
    "embedded_thumbnail": ".red_flags",
    "EDITING_SOFTWARE": ".red_flags",
    "read_quantization_tables": ".quantization",
    "standard_quality": ".quantization",
    "known_camera_tables": ".quantization",
    "gather_camera_tables": ".quantization",
    "camera_key": ".quantization",
    "tables_distance": ".quantization",
    "upright": ".thumbnails",
    "orientation_of": ".thumbnails",
    "photo_picture": ".thumbnails",
    "overlay_picture": ".thumbnails",
    "data_uri": ".thumbnails",
    "scale_bar": ".thumbnails",
}

__getattr__, __dir__, __all__ = _attach(__name__, _EXPORTS)
