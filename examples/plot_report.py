"""
Build a triage report
=====================

An analyst with a case of photos wants to *look*: which photos are
suspicious, where, how sure, and what each file claims about itself.
``exifclip localize --report`` (or ``exifclip report RESULTS``) writes one
HTML page that answers that offline: a summary with a histogram of scores, a
sortable and filterable table with thumbnails, a detail view per photo with
its heatmap, metadata red flags, EXIF, SHA-256 and the command that
reproduces it.

This example makes a small case (a spliced photo, its authentic host, a photo
"edited" in a named program and a file that is not an image), runs the
command, and shows what the page holds. Open the ``report.html`` it writes in
any browser; nothing is loaded from the network.
"""

# %%
# Make a case
# -----------
# The photos ship with scikit-image and are free of copyright. Each is saved
# as a JPEG with EXIF written by ``piexif``: a camera, capture settings and
# dates; one names an editing program, as Photoshop or GIMP would.
import contextlib
import io
import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import piexif
from PIL import Image
from skimage import data

from exifclip.cli import main
from exifclip.report import metadata_checks
from exifclip.splice.synthetic import random_region


def save_photo(path, pixels, software="Ver.1.00"):
    exif = piexif.dump({
        "0th": {piexif.ImageIFD.Make: b"Acme", piexif.ImageIFD.Model: b"Cam One",
                piexif.ImageIFD.Software: software.encode(), piexif.ImageIFD.DateTime: b"2024:05:01 10:00:00"},
        "Exif": {piexif.ExifIFD.ExposureTime: (1, 250), piexif.ExifIFD.FNumber: (28, 10),
                 piexif.ExifIFD.DateTimeOriginal: b"2024:05:01 10:00:00"},
    })
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=92, exif=exif)
    path.write_bytes(buf.getvalue())
    return path


case = Path(tempfile.mkdtemp(prefix="exifclip-report-"))
host, donor = data.chelsea(), data.rocket()
height, width = min(host.shape[0], donor.shape[0]), min(host.shape[1], donor.shape[1])
host, donor = host[:height, :width], donor[:height, :width]
region = random_region(height, width, np.random.default_rng(3), min_area=0.15, max_area=0.25)
photos = [
    save_photo(case / "spliced.jpg", np.where(region[..., None], donor, host)),
    save_photo(case / "host.jpg", host),
    save_photo(case / "retouched.jpg", data.astronaut()[:300, :400], software="Adobe Photoshop 25.0 (Windows)"),
]
(case / "notes.jpg").write_text("not a photo")

# %%
# Localise and report
# -------------------
# One command: the usual results (pictures, ``results.jsonl``) and the page.
# The file that is not an image is reported as failed (exit status 1) and
# listed on the page with its message.
with contextlib.redirect_stdout(io.StringIO()):  # the per-image JSON lines; they are in results.jsonl too
    status = main(["localize", *map(str, photos), str(case / "notes.jpg"), "--out", str(case / "results"),
                   "--device", "cpu", "--report"])
page = case / "results" / "report.html"
print(f"exit status {status}; {page.name}: {page.stat().st_size / 1024:.0f} KiB")

# %%
# What the page holds
# -------------------
# The page carries its data as JSON; here it is read back to show the table
# as the browser would (sorted by score, highest first) and the pictures of
# the detail view: the upright photo and its heatmap overlay. A score ranks
# photos by how much their regions disagree with each other; it is not a
# probability, and a different scene (the retouched photo is another photo
# altogether, not a splice) can score higher than a splice: the table says
# where to look first, the detail view what was found.
text = page.read_text(encoding="utf-8")
items = json.loads(text.split('id="report-data">', 1)[1].split("</script>", 1)[0])["items"]
for item in sorted(items, key=lambda i: -(i.get("score") or -1)):
    flags = [c["name"] for c in item["checks"] if c["status"] == "flag"]
    score = f"{item['score']:.3f}" if item.get("score") is not None else "  -  "
    print(f"{item['name']:14s} {item['status']:7s} score {score}  metadata flags: {', '.join(flags) or 'none'}")

shown = [i for i in items if i.get("preview")]
fig, axes = plt.subplots(2, len(shown), figsize=(3.3 * len(shown), 5), layout="constrained")
for col, item in enumerate(shown):
    for row, key in enumerate(("preview", "preview_overlay")):
        axes[row, col].imshow(Image.open(page.parent / item[key]))
        axes[row, col].set_axis_off()
    axes[0, col].set_title(f"{item['name']}\nscore {item['score']:.3f}", fontsize=9)
plt.show()

# %%
# The metadata red flags on their own
# -----------------------------------
# Each check is a plain function (:mod:`exifclip.report.red_flags`); none is
# proof, and each can be defeated by someone who knows it. A "flag" is a
# reason to look closer, "unknown" means the check could not be made.
for check in metadata_checks(photos[2]):
    print(f"{check.status:8s} {check.name:13s} {check.detail}")
