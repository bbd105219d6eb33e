"""
Linear probe of camera properties
=================================

How much does an image embedding say about the camera? A *linear probe*
answers with labelled photos: embed each photo with
:class:`~exifclip.embedder.ExifPatchEmbedder` (the L2-normalised mean of its
patch embeddings), standardise, and fit a logistic regression. Everything is
one scikit-learn :class:`~sklearn.pipeline.Pipeline`
(:func:`exifclip.probes.make_linear_probe`), so
:class:`~sklearn.model_selection.GridSearchCV` tunes the regularisation
``classify__C`` and the embedder's patch size ``embed__patch_size`` together,
and the model is loaded once for the whole search.

Which photos:

* Set the environment variable ``EXIFCLIP_PHOTOS`` to a folder of camera JPEGs
  that still carry their EXIF (e.g. the CC0 digicam corpus,
  github.com/drewnoakes/digicam_corpus): the probe learns the camera
  ``Model`` from four photos of every model that has four or more.
  (``exifclip-small`` was trained on most of the digicam corpus, so there
  this is no test of it: ``benchmarks/bench_probes.py`` measures the probe
  on photos the model never saw.)
* Without it, the example uses photos that scikit-image ships, cut into
  crops, each left as it is or processed in one known way (JPEG
  recompression, blur, noise): the probe learns the processing.

Photos never straddle the split: crops of one photo are all in training or
all in test (a grouped split), so the probe cannot score by recognising the
scene. It runs on the CPU in under a minute with the packaged model.
"""

# %%
# Photos and labels
# -----------------
import io
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from joblib import Memory
from PIL import Image, ImageFilter
from sklearn.model_selection import GridSearchCV, GroupKFold

from exifclip.exif import read_exif
from exifclip.probes import make_linear_probe

PER_MODEL = 4  # photos per camera model, in the folder case


def photos_from_folder(folder):
    """PER_MODEL camera JPEGs of every Model that has as many; each photo is its own group."""
    by_model = {}
    for path in sorted(Path(folder).iterdir()):
        if path.suffix.lower() in (".jpg", ".jpeg"):
            model = read_exif(path).get("Model")
            if model:
                by_model.setdefault(model, []).append(str(path))
    photos, labels = [], []
    for model, paths in sorted(by_model.items()):
        if len(paths) >= PER_MODEL:
            photos += paths[:PER_MODEL]
            labels += [model] * PER_MODEL
    return photos, labels, list(range(len(photos)))


def process(image, operation, rng):
    pil = Image.fromarray(image)
    if operation == "none":
        return image
    if operation == "JPEG 30":
        buffer = io.BytesIO()
        pil.save(buffer, "JPEG", quality=30)
        return np.asarray(Image.open(buffer).convert("RGB"))
    if operation == "Blur 2.0":
        return np.asarray(pil.filter(ImageFilter.GaussianBlur(radius=2.0)))
    if operation == "Noise 8.0":
        return np.clip(np.rint(image + rng.normal(0.0, 8.0, image.shape)), 0, 255).astype(np.uint8)
    raise ValueError(operation)


def processed_skimage_crops(side=128):
    """Two crops of each scikit-image photo under each operation; the group is the photo."""
    from skimage import data

    sources = [
        data.astronaut(),
        data.chelsea(),
        data.coffee(),
        data.rocket(),
        data.stereo_motorcycle()[0],
        data.hubble_deep_field(),
        data.retina(),
        data.immunohistochemistry(),
    ]
    operations = ["none", "JPEG 30", "Blur 2.0", "Noise 8.0"]
    rng = np.random.default_rng(0)
    photos, labels, groups = [], [], []
    for group, source in enumerate(sources):
        top = (source.shape[0] - side) // 2
        for left in (source.shape[1] // 2 - side, source.shape[1] // 2):  # two side-by-side crops
            crop = np.ascontiguousarray(source[top : top + side, left : left + side])
            for operation in operations:
                photos.append(process(crop, operation, rng))
                labels.append(operation)
                groups.append(group)
    return photos, labels, groups


folder = os.environ.get("EXIFCLIP_PHOTOS")
if folder:
    photos, labels, groups = photos_from_folder(folder)
    if len(set(labels)) < 2:
        raise SystemExit(f"{folder}: need at least two camera models with {PER_MODEL} photos each")
else:
    photos, labels, groups = processed_skimage_crops()
labels, groups = np.array(labels), np.array(groups)
print(f"{len(photos)} images, {len(set(labels))} classes: {dict(Counter(labels.tolist()))}")

# %%
# A held-out test set
# -------------------
# Camera photos: the last photo of each model is kept for the final test.
# Processed crops: a quarter of the source photos, with all their crops.
if folder:
    last_of_model = {label: group for label, group in zip(labels, groups)}
    test_groups = np.array(sorted(last_of_model.values()))
else:
    test_groups = np.random.default_rng(0).permutation(np.unique(groups))[: len(np.unique(groups)) // 4]
is_test = np.isin(groups, test_groups)
X_train = [p for p, t in zip(photos, is_test) if not t]
X_test = [p for p, t in zip(photos, is_test) if t]
y_train, y_test, groups_train = labels[~is_test], labels[is_test], groups[~is_test]
print(f"train {len(X_train)} images, test {len(X_test)} images")

# %%
# The probe and the grid search
# -----------------------------
# ``memory=`` caches the embedder's training embeddings, so the grid over
# ``C`` embeds each training fold once per patch size. exifclip-small was
# trained on 64-px patches; smaller patches are cheaper and see less.
cache = tempfile.mkdtemp(prefix="exifclip-probe-")
num_per_dim = 4 if folder else 2  # 2 x 2 patches tile a 128-px crop
probe = make_linear_probe(
    model="exifclip-small", num_per_dim=num_per_dim, device="cpu", memory=Memory(cache, verbose=0)
)
print(sorted(name for name in probe.get_params() if name in ("classify__C", "embed__patch_size")))
search = GridSearchCV(
    probe,
    {"classify__C": [0.01, 1.0], "embed__patch_size": [32, 64]},
    cv=GroupKFold(n_splits=2),
    error_score="raise",
)
search.fit(X_train, y_train, groups=groups_train)
for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
    print(f"  {params}  cross-validated accuracy {score:.2f}")
print("best:", search.best_params_)

# %%
# Test accuracy
# -------------
# The refitted best pipeline on the held-out photos, against chance.
predicted = search.predict(X_test)
accuracy = float((predicted == y_test).mean())
print(f"test accuracy {accuracy:.2f} on {len(X_test)} images (chance {1 / len(set(labels)):.2f})")
shutil.rmtree(cache, ignore_errors=True)

try:
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay
except ImportError:  # the printed figures above are the whole result
    plt = None

if plt is not None:
    display = ConfusionMatrixDisplay.from_predictions(y_test, predicted, xticks_rotation=45, colorbar=False)
    display.ax_.set_title("linear probe on held-out photos")
    display.figure_.tight_layout()
    plt.show()
