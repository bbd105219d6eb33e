"""Lens distortion: radial warps and their synthesis (:mod:`~exifclip.distortion.lens`)
and the regressor that estimates them from patch embeddings
(:mod:`~exifclip.distortion.regressor`).
"""

from .._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "DISTORTION_MODELS": ".lens",
        "distort": ".lens",
        "distorted_radius": ".lens",
        "check_warp_options": ".lens",
        "make_distortion_dataset": ".dataset",
        "monotonic_radius_limit": ".lens",
        "undistort": ".lens",
        "undistorted_radius": ".lens",
        "DistortionRegressor": ".regressor",
        "default_distortion_regressor": ".regressor",
        "fit_ring_regressor": ".regressor",
        "patch_radii": ".regressor",
        "ring_features": ".regressor",
    },
)
