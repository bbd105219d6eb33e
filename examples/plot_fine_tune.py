"""
Fine-tune on a folder of photos
===============================

The model learns from photos and their own EXIF, so any folder of photos
whose metadata is intact is training data: no labels to write.
``ExifPatchEmbedder(fine_tune=True).fit(paths)`` continues the contrastive
training of the packaged model on them (through
:func:`exifclip.training.train`) and keeps the result in the estimator; the
process-wide copy of ``exifclip-small`` is left untouched.

A real run wants hundreds of photos per camera and hundreds of steps
(``exifclip train --init exifclip-small --images DIR --out DIR``, see
:doc:`/training`). To stay under a minute on a CPU, this example makes a
tiny folder: crops of photos that ship with scikit-image, each passed
through one of three made-up "camera pipelines" (different noise, blur,
resampling and JPEG quality) and saved with that camera's EXIF. It shows the
mechanics and how to check the result, not a useful model.
"""

# %%
# A folder of photos with EXIF
# ----------------------------
# Each "camera" is a processing pipeline plus the EXIF it writes. The
# pipelines differ in the kind of traces real cameras differ in: sensor
# noise, sharpening or smoothing, resampling and JPEG compression.
import io
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import piexif
from PIL import Image, ImageFilter
from skimage import data

from exifclip import ExifPatchEmbedder, exif_to_text, read_exif

CAMERAS = {
    "Alpha A1": dict(noise=4.0, blur=0.0, scale=1.0, quality=95, exposure=(1, 250), fnumber=(28, 10), iso=200),
    "Beta B2": dict(noise=0.0, blur=1.2, scale=1.0, quality=70, exposure=(1, 60), fnumber=(56, 10), iso=800),
    "Gamma G3": dict(noise=1.5, blur=0.0, scale=0.6, quality=85, exposure=(1, 30), fnumber=(40, 10), iso=100),
}


def camera_exif(model, settings):
    return piexif.dump(
        {
            "0th": {piexif.ImageIFD.Make: model.split()[0].encode(), piexif.ImageIFD.Model: model.encode()},
            "Exif": {
                piexif.ExifIFD.ExposureTime: settings["exposure"],
                piexif.ExifIFD.FNumber: settings["fnumber"],
                piexif.ExifIFD.ISOSpeedRatings: settings["iso"],
                piexif.ExifIFD.FocalLength: (35, 1),
            },
        }
    )


def take_photo(scene, settings, rng):
    """Pass a uint8 RGB scene through one camera's pipeline; JPEG bytes out."""
    image = scene.astype(np.float64)
    if settings["noise"]:
        image = image + rng.normal(0.0, settings["noise"], image.shape)
    pil = Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8))
    if settings["blur"]:
        pil = pil.filter(ImageFilter.GaussianBlur(settings["blur"]))
    if settings["scale"] != 1.0:
        small = (round(pil.width * settings["scale"]), round(pil.height * settings["scale"]))
        pil = pil.resize(small, Image.BILINEAR).resize(pil.size, Image.BICUBIC)
    out = io.BytesIO()
    pil.save(out, "JPEG", quality=settings["quality"])
    return out.getvalue()


scenes = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.immunohistochemistry()]
folder = Path(tempfile.mkdtemp(prefix="exifclip-photos-"))
rng = np.random.default_rng(0)
photos = {"train": [], "held_out": []}
for s, scene in enumerate(scenes):
    for model, settings in CAMERAS.items():
        for k in range(2):
            top = rng.integers(0, scene.shape[0] - 192)
            left = rng.integers(0, scene.shape[1] - 192)
            crop = np.ascontiguousarray(scene[top : top + 192, left : left + 192])
            path = folder / f"scene{s}_{model.split()[0].lower()}_{k}.jpg"
            Image.open(io.BytesIO(take_photo(crop, settings, rng))).save(
                path, "JPEG", quality=settings["quality"], exif=camera_exif(model, settings)
            )
            # The last scene is never trained on: it checks the result.
            photos["held_out" if s == len(scenes) - 1 else "train"].append(path)

print(f"{len(photos['train'])} training photos, {len(photos['held_out'])} held-out photos in {folder}")
print("the EXIF of one, as the text tower reads it:")
print(" ", exif_to_text(read_exif(photos["train"][0])))

# %%
# Fine-tune
# ---------
# 60 steps of 12 photos, one random 64-pixel patch of each per step, against
# its own EXIF text. ``train_losses_`` holds the contrastive loss of every
# step. With three cameras, about four photos of a batch share each text, so
# the loss cannot fall to zero: the floor is near ``log(4)``, and the dashed
# line, ``log(12)``, is what a model that matches nothing would score.
tuned = ExifPatchEmbedder(
    model="exifclip-small",
    device="cpu",
    fine_tune=True,
    train_steps=60,
    train_batch_size=12,
    learning_rate=1e-3,
    num_per_dim=8,
    seed=0,
)
tuned.fit([str(p) for p in photos["train"]])

losses = tuned.train_losses_
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(np.arange(1, len(losses) + 1), losses, marker=".")
ax.axhline(np.log(12), color="gray", linestyle="--", label="chance: log(batch size)")
ax.set_xlabel("step")
ax.set_ylabel("contrastive loss")
ax.set_title(f"fine-tuning exifclip-small on {len(photos['train'])} photos")
ax.legend()
fig.tight_layout()

# %%
# Did it learn the cameras?
# -------------------------
# Match each held-out photo (a scene never trained on) to the EXIF text of
# the three cameras: the text whose embedding is closest to the photo's
# pooled patch embedding wins. Chance is one in three. The packaged model
# never saw these pipelines, so it is the baseline.
texts = {model: exif_to_text(read_exif(next(p for p in photos["train"] if model.split()[0].lower() in p.name)))
         for model in CAMERAS}
truth = [next(m for m in CAMERAS if m.split()[0].lower() in p.name) for p in photos["held_out"]]
baseline = ExifPatchEmbedder(model="exifclip-small", device="cpu", num_per_dim=8).fit()
names = list(CAMERAS)

fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
for ax, (label, embedder) in zip(axes, [("exifclip-small", baseline), ("fine-tuned", tuned)]):
    similarity = embedder.transform([str(p) for p in photos["held_out"]]) @ embedder.embed_exif(
        [texts[m] for m in names]
    ).T
    predicted = [names[i] for i in similarity.argmax(1)]
    accuracy = np.mean([p == t for p, t in zip(predicted, truth)])
    print(f"{label}: {accuracy:.0%} of {len(truth)} held-out photos matched to their camera")
    ax.imshow(similarity, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(truth)), [f"{t} #{i % 2}" for i, t in enumerate(truth)])
    ax.set_title(f"{label}: accuracy {accuracy:.0%}")
axes[0].set_ylabel("held-out photo (true camera)")
fig.suptitle("cosine similarity of photo and camera text")
fig.tight_layout()
plt.show()

# %%
# Reading the result honestly
# ---------------------------
# Six held-out photos of one scene are an illustration, not a measurement;
# with 24 training photos the model can also learn the scenes instead of the
# cameras. To keep the fine-tuned model, ``tuned.save_pretrained("my-model")``
# writes a model directory that every estimator and the command line accept
# as ``model="my-model"``. For a real run, hold out whole camera models, not
# just photos, and measure on splices made from them
# (:func:`exifclip.splice.synthetic.make_splices`, ``exifclip evaluate``).

shutil.rmtree(folder)  # the photos were only for this example
