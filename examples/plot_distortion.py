"""
Regress radial lens distortion
==============================

A lens bends straight lines: barrel distortion (``k1 < 0``) pulls the
periphery towards the centre, pincushion (``k1 > 0``) pushes it out. This
example

1. synthesises both on a checkerboard with :func:`exifclip.distortion.distort`
   and undoes them with :func:`exifclip.distortion.undistort`;
2. builds a small distortion dataset from photos that scikit-image ships
   (:func:`exifclip.distortion.make_distortion_dataset`);
3. fits :class:`exifclip.DistortionRegressor`, with the packaged
   ``exifclip-small`` model, and estimates ``k1`` of new distortions.

Coefficients are in half-diagonal units of the distorted image, division
model ``r_u = r_d / (1 + k1 r_d^2 + k2 r_d^4)`` (see :mod:`exifclip.distortion`).
It runs offline on a CPU in well under a minute. Install the extras first:
``pip install "exifclip[examples,docs]"`` (scikit-image for the photos,
matplotlib for the figures; without matplotlib the numbers are still
printed).
"""

# %%
# Distort and undistort a checkerboard
# ------------------------------------
# Barrel distortion shrinks the output: it is cropped to the largest
# rectangle whose pixels all come from the input, so no black border tells
# the distortion away.
import numpy as np
from skimage import data

from exifclip.distortion import DistortionRegressor, distort, make_distortion_dataset, undistort

board = np.kron(data.checkerboard(), np.ones((2, 2), np.uint8))  # 400 x 400, squares of 50 px
examples = {f"k1 = {k1:+.2f}": distort(board, k1) for k1 in (-0.3, 0.0, 0.1)}
restored = undistort(examples["k1 = -0.30"], -0.3)
for name, image in examples.items():
    print(f"{name}: {image.shape[1]} x {image.shape[0]} px")
print(f"undistorted again: {restored.shape[1]} x {restored.shape[0]} px")

# %%
# A distortion dataset from six photos
# ------------------------------------
# Each photo is distorted eight times with ``k1`` drawn uniformly from
# ``[-0.3, 0.1]``; ``source`` records which photo each image came from.
motorcycle_left, motorcycle_right, _ = data.stereo_motorcycle()
photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), motorcycle_left, motorcycle_right]
images, params, source = make_distortion_dataset(photos, n=48, k_range=(-0.3, 0.1), seed=0, return_source_index=True)
k1 = params[:, 0]
# the first six distortions of every photo train, its last two test
rank_in_photo = np.array([np.sum(source[:i] == source[i]) for i in range(len(source))])
train, test = rank_in_photo < 6, rank_in_photo >= 6

# %%
# Fit, then estimate ``k1`` of new distortions
# --------------------------------------------
# The regressor pools ``exifclip-small`` patch embeddings over four
# concentric rings and fits a ridge regression on them. A sparse patch grid
# (``num_per_dim=8``) keeps this fast on a CPU.
regressor = DistortionRegressor(model="exifclip-small", num_per_dim=8, device="cpu")
regressor.fit([images[i] for i in np.flatnonzero(train)], k1[train])
predicted = regressor.predict([images[i] for i in np.flatnonzero(test)])
mae = np.abs(predicted - k1[test]).mean()
mae_mean = np.abs(k1[train].mean() - k1[test]).mean()
print(f"MAE of k1 on new distortions: {mae:.3f} (predicting the training mean: {mae_mean:.3f})")

# %%
# Look at it
# ----------
# The test images are new distortions of photos seen in training. Six
# photos are far too few to generalise to photos never seen (here that
# does no better than the mean), and these photos carry no camera traces of
# their own (they were resized and re-encoded long ago):
# ``benchmarks/bench_distortion.py`` measures the method on unseen real
# camera photos, with cross-validation grouped by photo.
try:
    import matplotlib.pyplot as plt
except ImportError:  # the numbers above are the result; the figure is a bonus
    plt = None

if plt is not None:
    fig, axes = plt.subplots(1, 5, figsize=(17, 3.6))
    for ax, (name, image) in zip(axes, examples.items()):
        ax.imshow(image, cmap="gray")
        ax.set_title(f"{name} ({image.shape[1]} px)")
        ax.axis("off")
    axes[3].imshow(restored, cmap="gray")
    axes[3].set_title("k1 = -0.30, undistorted")
    axes[3].axis("off")
    axes[4].plot([-0.3, 0.1], [-0.3, 0.1], color="grey", lw=1, label="perfect")
    axes[4].scatter(k1[test], predicted, s=14, label="new distortions")
    axes[4].set_xlabel("true k1")
    axes[4].set_ylabel("estimated k1")
    axes[4].legend(loc="upper left")
    fig.tight_layout()
    plt.show()
