"""
Localise a splice
=================

Paste a region of one photo into another, then ask
:class:`exifclip.SpliceLocalizer` which part of the result disagrees with the
rest. No metadata is used: the packaged model ``exifclip-small`` embeds
overlapping patches of the pixels, and the localiser compares the patches
with each other.

The two photos ship with scikit-image and are free of copyright: the host is
"Chelsea the cat" (CC0, Stefan van der Walt) and the donor is SpaceX's
public-domain photo of a Falcon 9 launch. They come from different cameras
and were processed differently, so the pasted region is easy to see for a
person too; this example shows how to call the localiser and how to read its
outputs, not how well it works (see :doc:`/benchmarks` for measured figures).
"""

# %%
# Make the splice
# ---------------
# Both photos are cut to a common size and a smooth random region of the
# donor replaces the host's pixels at the same place: no resizing, no
# blending, as :func:`exifclip.splice.synthetic.make_splices` does with camera
# photos. ``examples/make_example.py`` writes the same kind of image to disk.
import matplotlib.pyplot as plt
import numpy as np
from skimage import data

from exifclip import SpliceLocalizer
from exifclip.splice.metrics import ciou, pixel_map_score
from exifclip.splice.synthetic import random_region
from exifclip.viz import overlay

host, donor = data.chelsea(), data.rocket()
height, width = min(host.shape[0], donor.shape[0]), min(host.shape[1], donor.shape[1])
host, donor = host[:height, :width], donor[:height, :width]
truth = random_region(height, width, np.random.default_rng(3), min_area=0.15, max_area=0.25)
spliced = np.where(truth[..., None], donor, host)

fig, axes = plt.subplots(1, 2, figsize=(8, 3))
axes[0].imshow(spliced)
axes[0].set_title("spliced photo")
axes[1].imshow(truth, cmap="gray")
axes[1].set_title(f"ground truth ({truth.mean():.0%} pasted)")
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()

# %%
# Localise
# --------
# ``fit()`` with no data only loads the model: the method is zero shot. One
# call localises a list of images of any sizes; here the splice and, for
# comparison, its authentic host.
localizer = SpliceLocalizer(model="exifclip-small", device="cpu").fit()
result, host_result = localizer.localize([spliced, host])

grid = result.grid
print(f"{grid.n_rows} x {grid.n_cols} patches of {grid.patch_size} px, stride {grid.stride} px")
print(f"detection score: spliced {result.score:.3f}, authentic host {host_result.score:.3f}")
print(f"mask covers {result.mask.mean():.0%} of the spliced photo, {host_result.mask.mean():.0%} of the host")

# %%
# Read the outputs
# ----------------
# * ``heatmap``: each pixel's distance (``1 - cos``) to the majority of the
#   photo's patches, on a fixed 0 to 1 scale shared by every image. Dark
#   areas look like most of the photo; bright areas do not.
# * ``mask``: the heatmap split in two, the group of higher values (here by
#   1-D 2-means; see :doc:`plot_meanshift_vs_ncut` for the normalised cut).
# * ``score``: one number per photo, the mean of the cell-to-cell distances
#   (the paper's detection score). It is not a probability.
#
# The heatmaps are drawn on the same scale, so they can be compared. The
# pasted region is the brightest part of the splice; but the host, which is
# authentic, also has a bright strip on the right (the out-of-focus
# background), and its mask marks it: every photo gets a mask. The score is
# what separates the two photos here, by the small margin printed above.
fig, axes = plt.subplots(2, 3, figsize=(10, 5.6), layout="constrained")
for row, (name, image, res) in enumerate([("spliced", spliced, result), ("authentic host", host, host_result)]):
    shown = axes[row, 0].imshow(res.heatmap, cmap="magma", vmin=0, vmax=1)
    axes[row, 0].set_title(f"{name}: heatmap")
    axes[row, 1].imshow(res.mask, cmap="gray")
    axes[row, 1].set_title(f"mask, score {res.score:.2f}")
    axes[row, 2].imshow(overlay(image, res.heatmap, res.mask))
    axes[row, 2].set_title("overlay")
for ax in axes.ravel():
    ax.set_xticks([])  # a frame but no ticks: white mask pixels stay visible at the edges
    ax.set_yticks([])
fig.colorbar(shown, ax=axes[:, 0], location="left", shrink=0.8, label="distance to the majority")
plt.show()

# %%
# What this does and does not say
# -------------------------------
# The heatmap marks where the photo is *inconsistent with its own majority*.
# It is not proof of manipulation: a photo can hold regions with different
# traces for innocent reasons (a sky that saturates, heavy local editing,
# text overlays), and a splice whose source camera resembles the host's
# leaves little to see. It also cannot say which side was pasted: if the
# pasted region covered most of the frame, the "majority" would be the
# donor, and the host would light up. For the same reason the benchmark
# metrics are *permuted*: p-AP takes the better of the heatmap and its
# inverse, cIoU the better of the mask and its complement.
#
# How well they match the truth on this one image (one image is an
# illustration, not a measurement):
print(f"p-AP of the heatmap: {pixel_map_score(result.heatmap, truth):.3f}")
print(f"cIoU of the mask:    {ciou(result.mask, truth):.3f}")
