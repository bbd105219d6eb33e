"""
Zero-shot camera-property probes
================================

exifclip's model was trained to tell which EXIF text belongs to which image
patch, so it can be asked questions in that text without any labelled photo:
*does this photo look more like "Model: Canon EOS 5D" or like "Model: NIKON
D3200"?* :class:`exifclip.probes.ExifZeroShotClassifier` writes each
candidate value as the ``"Tag: value"`` pair the text tower read in training,
embeds it, and compares it with every patch of the photo, as CLIP does: a
softmax over ``logit_scale * cos(patch, text)``, combined over the patches.

Which photos:

* Set the environment variable ``EXIFCLIP_PHOTOS`` to a folder of camera JPEGs
  that still carry their EXIF (for instance the CC0 digicam corpus,
  github.com/drewnoakes/digicam_corpus). The example then predicts each
  photo's camera ``Model`` among the models found in the folder, from the
  pixels alone, and checks against the EXIF. (``exifclip-small`` was trained
  on most of the digicam corpus, so there this is no test of it:
  ``benchmarks/bench_probes.py`` measures it on photos it never saw.)
* Without it, the example runs on photos that scikit-image ships, each
  processed in a known way (JPEG recompression, blur, noise, resampling,
  gamma), and asks for the ``Processing`` tag: the packaged model
  ``exifclip-small`` was trained with such processing named in its text
  (``", Processing: JPEG 75"``).

It runs on the CPU in well under a minute with the packaged default model.
"""

# %%
# Photos and what they are
# ------------------------
import io
import os
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from exifclip.exif import read_exif
from exifclip.probes import POOLINGS, ExifZeroShotClassifier, zero_shot_logits, zero_shot_scores

MAX_PHOTOS, PER_MODEL = 30, 2  # keeps the folder case fast


def photos_from_folder(folder):
    """Up to PER_MODEL camera JPEGs of each EXIF Model in the folder, MAX_PHOTOS in all."""
    by_model = {}
    for path in sorted(Path(folder).iterdir()):
        if path.suffix.lower() in (".jpg", ".jpeg"):
            model = read_exif(path).get("Model")
            if model and len(by_model.setdefault(model, [])) < PER_MODEL:
                by_model[model].append(str(path))
    pairs = [(path, model) for model, paths in sorted(by_model.items()) for path in paths][:MAX_PHOTOS]
    return [path for path, _ in pairs], [model for _, model in pairs]


def process(image, operation, rng):
    """Apply one named processing operation to a uint8 RGB image."""
    pil = Image.fromarray(image)
    if operation == "JPEG 50":
        buffer = io.BytesIO()
        pil.save(buffer, "JPEG", quality=50)
        return np.asarray(Image.open(buffer).convert("RGB"))
    if operation == "Blur 2.0":
        return np.asarray(pil.filter(ImageFilter.GaussianBlur(radius=2.0)))
    if operation == "Noise 8.0":
        return np.clip(np.rint(image + rng.normal(0.0, 8.0, image.shape)), 0, 255).astype(np.uint8)
    if operation == "Resample 0.50":
        return np.asarray(pil.resize((image.shape[1] // 2, image.shape[0] // 2), Image.BICUBIC))
    if operation == "Gamma 1.50":
        return np.clip(np.rint(255.0 * (image / 255.0) ** 1.5), 0, 255).astype(np.uint8)
    raise ValueError(operation)


def center_crop(image, side):
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    return np.ascontiguousarray(image[top : top + side, left : left + side])


def processed_skimage_photos():
    """scikit-image's photos, each processed by every operation, and the operation's name."""
    from skimage import data

    sources = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.stereo_motorcycle()[0]]
    operations = ["JPEG 50", "Blur 2.0", "Noise 8.0", "Resample 0.50", "Gamma 1.50"]
    rng = np.random.default_rng(0)
    photos, labels = [], []
    for source in sources:
        for operation in operations:
            # process a 288-px centre, then keep its central 144 px (all of it after halving)
            photos.append(center_crop(process(center_crop(source, 288), operation, rng), 144))
            labels.append(operation)
    return photos, labels


folder = os.environ.get("EXIFCLIP_PHOTOS")
if folder:
    photos, labels = photos_from_folder(folder)
    tag, num_per_dim = "Model", 6
    if len(set(labels)) < 2:
        raise SystemExit(f"{folder}: need photos of at least two camera models with EXIF")
else:
    photos, labels = processed_skimage_photos()
    tag, num_per_dim = "Processing", 4
candidates = sorted(set(labels))
labels = np.array(labels)
print(f"{len(photos)} photos, tag {tag!r}, {len(candidates)} candidates: {candidates}")

# %%
# Zero-shot prediction
# --------------------
# ``fit`` learns nothing: it loads the model and embeds the candidates' texts
# (``clf.texts_``). ``predict_proba`` gives one row per photo that sums to one.
clf = ExifZeroShotClassifier(tag=tag, candidates=candidates, num_per_dim=num_per_dim, device="cpu").fit()
print("texts:", clf.texts_)
proba = clf.predict_proba(photos)
predicted = clf.classes_[proba.argmax(axis=1)]
accuracy = float((predicted == labels).mean())
print(f"accuracy {accuracy:.2f} over {len(photos)} photos (chance {1 / len(candidates):.2f})")
for (truth, guess), count in Counter(zip(labels.tolist(), predicted.tolist())).most_common(8):
    print(f"  {count} x truth {truth!r:16} predicted {guess!r}")

# %%
# How patches combine
# -------------------
# Each photo is many patches. The default averages each patch's
# log-probabilities (``"mean_log_proba"``); ``"mean_embedding"`` compares
# the pooled image embedding once, which ranks the candidates the same way
# (only the confidence differs); ``"mean_proba"`` averages probabilities.
# The functional core computes all three from one pass of patch embeddings.
items = clf.embedder_.transform_patches(photos)
truth_index = np.array([candidates.index(v) for v in labels])
for pooling in POOLINGS:
    scores = np.stack([zero_shot_scores(i.embeddings, clf.text_embeddings_, clf.logit_scale_, pooling) for i in items])
    log_proba = scores - np.logaddexp.reduce(scores, axis=1, keepdims=True)
    print(
        f"{pooling:15} accuracy {(scores.argmax(1) == truth_index).mean():.2f}  "
        f"log-loss {-log_proba[np.arange(len(items)), truth_index].mean():.2f}"
    )

# %%
# Which patches vote for the truth
# --------------------------------
# Per patch, the probability of the photo's true value, on the patch grid,
# for the photo the classifier got right most confidently (the one image
# shown, so it is chosen, not typical), and for the photo it got most wrong.
p_truth = proba[np.arange(len(photos)), truth_index]
shown = {"most confidently right": int(np.argmax(p_truth)), "most wrong": int(np.argmin(p_truth))}
grid_maps = {}
for name, index in shown.items():
    item = items[index]
    patch_proba = np.exp(zero_shot_logits(item.embeddings, clf.text_embeddings_, clf.logit_scale_))
    patch_proba /= patch_proba.sum(axis=1, keepdims=True)
    grid_maps[name] = patch_proba[:, truth_index[index]].reshape(item.grid.n_rows, item.grid.n_cols)
    print(f"{name}: photo {index} ({labels[index]}), p(truth) per patch\n{np.round(grid_maps[name], 2)}")

try:
    import matplotlib.pyplot as plt
except ImportError:  # the printed figures above are the whole result
    plt = None

if plt is not None:
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    axes[0].imshow(proba, aspect="auto", cmap="viridis", vmin=0, vmax=1)
    axes[0].set_xticks(range(len(candidates)), candidates, rotation=45, ha="right", fontsize=7)
    axes[0].set_yticks(range(len(labels)), labels, fontsize=6)
    axes[0].set_title("p(candidate | photo); rows: truth")
    for ax, (name, index) in zip(axes[1:], shown.items()):
        image = ax.imshow(grid_maps[name], cmap="viridis", vmin=0, vmax=1)
        ax.set_title(f"{name}: p({labels[index]}) per patch", fontsize=9)
    fig.colorbar(image, ax=axes[1:])
    plt.show()
