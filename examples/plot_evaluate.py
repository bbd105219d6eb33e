"""
Evaluate on a benchmark folder
==============================

Build a small splice benchmark, run the localiser over it, score it with
:func:`exifclip.evaluate_localization` (the metrics ``exifclip evaluate``
prints) and draw precision-recall curves with scikit-learn: per pixel for
each spliced image, and per image for detection.

The benchmark is made by :func:`exifclip.make_splices` from six photos that
ship with scikit-image, each from a different source (a NASA astronaut
portrait, a Hubble deep field, a microscope slide, a cup of coffee, a cat,
a rocket launch), so every splice joins two devices and two processing
pipelines. Twelve images are far too few to compare models; the measured
figures of ``exifclip-small`` are in its model card and in
:doc:`/benchmarks`. With a real benchmark on disk the same code runs on
``load_dataset("columbia", root)``, ``"dso1"``, ``"korus"`` or ``"folder"``.
"""

# %%
# A benchmark folder
# ------------------
# ``make_splices`` needs to know each photo's camera: from its EXIF
# ``Make``/``Model``, or, as here where the photos carry none, from a
# ``MANIFEST.csv`` next to them. It writes lossless spliced images, their
# masks, authentic crops and a manifest that
# :func:`exifclip.load_dataset` reads back.
import csv
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image
from skimage import data
from sklearn.metrics import average_precision_score, precision_recall_curve

from exifclip import SpliceLocalizer, evaluate_localization, load_dataset, make_splices
from exifclip.splice.metrics import pixel_ap, pixel_map_score

workdir = Path(tempfile.mkdtemp(prefix="exifclip-benchmark-"))
photo_dir = workdir / "photos"
photo_dir.mkdir()
sources = {
    "astronaut": ("NASA", "astronaut portrait"),
    "hubble_deep_field": ("NASA", "Hubble deep field"),
    "immunohistochemistry": ("microscope", "immunohistochemistry slide"),
    "coffee": ("scikit-image", "coffee"),
    "chelsea": ("scikit-image", "Chelsea the cat"),
    "rocket": ("SpaceX", "Falcon 9 launch"),
}
with open(photo_dir / "MANIFEST.csv", "w", newline="") as fh:
    writer = csv.writer(fh)
    writer.writerow(["file", "make", "model"])
    for name, (make, model) in sources.items():
        # A crop, not a resize: resampling would erase the traces the model reads.
        Image.fromarray(getattr(data, name)()[:400, :400]).save(photo_dir / f"{name}.png")
        writer.writerow([f"{name}.png", make, model])

bench = workdir / "benchmark"
make_splices(photo_dir, bench, n=6, n_authentic=6, seed=0, min_area=0.1, max_area=0.3, max_size=320)
samples = list(load_dataset("synthetic", bench))
print(f"{sum(s.label for s in samples)} spliced and {sum(1 - s.label for s in samples)} authentic images")

fig, axes = plt.subplots(2, 6, figsize=(12, 4.2))
for ax, sample in zip(axes[0], samples[:6]):
    ax.imshow(np.asarray(Image.open(sample.image)))
    ax.set_title(Path(sample.name).name, fontsize=9)
for ax, sample in zip(axes[1], samples[:6]):
    ax.imshow(sample.mask, cmap="gray")
for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("the spliced images and their masks (white = pasted)")
fig.tight_layout()

# %%
# Localise and score
# ------------------
# One call localises every image; ``evaluate_localization`` pairs the
# results with the masks. Localisation metrics are means over the spliced
# images only and are *permuted* (each image counts the better of the
# heatmap and its inverse, since no method can know which side of a splice
# is the original); detection metrics rank the ``score`` of every image.
#
# ``num_per_dim=15`` lays a coarser grid than the paper's 30 patches along
# the longer side, which keeps this example fast on a CPU (the cost of mean
# shift grows with the cube of the number of grid cells); leave it at its
# default for real measurements.
localizer = SpliceLocalizer(model="exifclip-small", device="cpu", num_per_dim=15).fit()
results = localizer.localize([s.image for s in samples])
report = evaluate_localization(
    results, [s.mask for s in samples], labels=[s.label for s in samples], names=[s.name for s in samples]
)
print(report)

# %%
# Precision-recall curves
# -----------------------
# Left: one curve per spliced image, every pixel a sample, the heatmap as
# the score. Each is drawn in the orientation p-AP keeps (dashed where the
# inverted heatmap ranks better, i.e. the "spliced" side looked like the
# majority). Right: detection, one sample per image, the ``score`` against
# the spliced/authentic label.
fig, (ax_pixels, ax_images) = plt.subplots(1, 2, figsize=(10, 4.2))
for sample, result in zip(samples, results):
    if not sample.label:
        continue
    truth = sample.mask.ravel()
    heat = result.heatmap.ravel().astype(np.float64)
    inverted = pixel_ap(-result.heatmap, sample.mask) > pixel_ap(result.heatmap, sample.mask)
    precision, recall, _ = precision_recall_curve(truth, -heat if inverted else heat)
    ax_pixels.plot(
        recall,
        precision,
        linestyle="--" if inverted else "-",
        label=f"{Path(sample.name).name}: p-AP {pixel_map_score(result.heatmap, sample.mask):.2f}",
    )
ax_pixels.set_xlabel("recall (pixels)")
ax_pixels.set_ylabel("precision")
ax_pixels.set_title(f"localisation, p-mAP {report.pmap:.2f}")
ax_pixels.legend(fontsize=8)

labels = np.array([s.label for s in samples])
scores = np.array([r.score for r in results])
precision, recall, _ = precision_recall_curve(labels, scores)
ax_images.step(recall, precision, where="post")
ax_images.axhline(labels.mean(), color="gray", linestyle=":", label="chance")
ax_images.set_xlabel("recall (images)")
ax_images.set_ylabel("precision")
ax_images.set_title(f"detection, AP {average_precision_score(labels, scores):.2f} ({len(labels)} images)")
ax_images.legend()
for ax in (ax_pixels, ax_images):
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
fig.tight_layout()
plt.show()

# %%
# From the command line
# ---------------------
# The same evaluation, with every per-image row in a JSON file::
#
#     exifclip evaluate --dataset synthetic --root benchmark/ --json metrics.json
#
# Any benchmark laid out as ``images/`` and ``masks/`` (matched by file
# name) runs with ``--dataset folder``.
shutil.rmtree(workdir)
