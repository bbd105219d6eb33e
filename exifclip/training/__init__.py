"""Contrastive training, from one CPU to many GPUs: the run's settings
(:mod:`~exifclip.training.config`), the loop (:mod:`~exifclip.training.loop`),
photos and their EXIF text (:mod:`~exifclip.training.data`), ranks and global
batches (:mod:`~exifclip.training.distributed`), batches drawn by camera
(:mod:`~exifclip.training.sampling`), processing augmentations
(:mod:`~exifclip.training.augment`), the EXIF text's augmentations and labels
(:mod:`~exifclip.training.text`), micro-batches on their way to the loss
(:mod:`~exifclip.training.microbatch`), checkpoints and the estimator's fine-tuning.
"""

from .._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "TrainingConfig": ".config",
        "TrainResult": ".loop",
        "lr_factor": ".loop",
        "train": ".loop",
        "ExifRecord": ".data",
        "PatchSample": ".data",
        "ExifPatchDataset": ".data",
        "find_images": ".data",
        "read_metadata": ".data",
        "count_tags": ".data",
        "AUGMENT_OPS": ".augment",
        "DEFAULT_AUGMENT_OPS": ".augment",
        "AugmentConfig": ".augment",
        "augment_patch": ".augment",
        "augmentation_phrases": ".augment",
        "process_patch": ".augment",
        "DistillConfig": ".distill",
        "DistillResult": ".distill",
        "FastModeDistillLoss": ".distill",
        "distill_fast_mode": ".distill",
        "SAMPLING_MODES": ".sampling",
        "CameraBatches": ".sampling",
        "camera_key": ".text",
        "exif_items": ".text",
        "text_labels": ".text",
        "transform_text": ".text",
        "DistContext": ".distributed",
        "GlobalBatchSampler": ".distributed",
        "gather_with_local_grad": "..modeling.loss",
        "scale_grad": "..modeling.loss",
        "setup_distributed": ".distributed",
        "STATE_FILE": ".checkpoints",
        "TrainLog": ".checkpoints",
        "json_default": ".checkpoints",
        "latest_checkpoint": ".checkpoints",
        "load_training_state": ".checkpoints",
        "save_checkpoint": ".checkpoints",
        # the loss and its gather live with the model; kept here for exifclip 0.1 code
        "ClipLoss": "..modeling.loss",
        "global_clip_loss": "..modeling.loss",
        "contrastive_targets": "..modeling.loss",
    },
)
