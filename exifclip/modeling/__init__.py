"""The model: configuration, the two towers, the architecture factory, the
contrastive loss, the EXIF tokenizer, loading and publishing, and the
converter of the paper's weights.
"""

from .._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "CLIP_MEAN": ".configuration",
        "CLIP_STD": ".configuration",
        "ExifClipConfig": ".configuration",
        "ExifClipModel": ".model",
        "ExifClipOutput": ".model",
        "patches_to_pixel_values": ".model",
        "create_model": ".factory",
        "get_architecture_config": ".factory",
        "list_architectures": ".factory",
        "ClipLoss": ".loss",
        "clip_logits": ".loss",
        "global_clip_loss": ".loss",
        "build_exif_tokenizer": ".tokenization",
        "synthetic_exif_corpus": ".tokenization",
        "SPECIAL_TOKENS": ".tokenization",
        "ModelLoadError": ".hub",
        "ModelNotFoundError": ".hub",
        "load_model": ".hub",
        "load_tokenizer": ".hub",
        "resolve_model_dir": ".hub",
        "packaged_models": ".hub",
        "clear_model_cache": ".hub",
        "push_to_hub": ".hub",
        "ConversionError": ".convert",
        "convert_official": ".convert",
        "load_official_state_dict": ".convert",
        "map_official_key": ".convert",
        "CPU_FORWARD_CHUNK": ".embedding",
        "PatchEmbeddings": ".embedding",
        "embed_patches": ".embedding",
        "embed_patches_fast": ".embedding",
        "embed_texts": ".embedding",
        "pool_patch_embeddings": ".embedding",
        "dense_patch_embeddings": ".dense",
        "feature_stride": ".dense",
        "trunk_features": ".dense",
        "window_weights": ".dense",
    },
)
