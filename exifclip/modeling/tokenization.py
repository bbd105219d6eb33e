"""A WordPiece tokenizer for EXIF text.

EXIF text is a small language: tag names, camera makes and models, numbers
and units. A vocabulary learnt from such strings (with the ``tokenizers``
library) keeps the text tower small; it is wrapped as a
:class:`transformers.DistilBertTokenizerFast` so it saves and loads with the
model like any Hub tokenizer. The ``paper-resnet50`` architecture instead
uses the ``distilbert-base-uncased`` vocabulary, as the paper did.
"""

from __future__ import annotations

import itertools
import string
from collections import Counter
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import DistilBertTokenizerFast

__all__ = ["build_exif_tokenizer", "synthetic_exif_corpus", "SPECIAL_TOKENS"]

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# A few makes and values so that a tokenizer built without a photo corpus
# still covers common EXIF words; real vocabularies come from real EXIF.
_MAKES = {
    "Canon": ["Canon EOS 5D Mark III", "Canon PowerShot S95"],
    "NIKON CORPORATION": ["NIKON D3200", "NIKON D750"],
    "SONY": ["DSC-RX100", "ILCE-7M3"],
    "Apple": ["iPhone XR", "iPhone 13 Pro"],
    "FUJIFILM": ["X-T3"],
    "OLYMPUS IMAGING CORP.": ["E-M10"],
    "Panasonic": ["DMC-FZ200"],
    "PENTAX": ["K-5"],
    "EASTMAN KODAK COMPANY": ["KODAK EASYSHARE C813"],
    "GoPro": ["HERO4 Silver"],
}
_VALUES = {
    "Exposure Time": ["1/500", "1/60", "1/8000", "0.5", "2", "30"],
    "F-Number": ["1.8", "2.8", "4.0", "5.6", "8.0", "16.0"],
    "Focal Length": ["4.2 mm", "18.0 mm", "35.0 mm", "50.0 mm", "200.0 mm"],
    "ISO Speed Ratings": ["50", "100", "200", "400", "800", "1600", "3200", "6400"],
    "Metering Mode": ["Pattern", "Center Weighted Average", "Spot", "Average", "Partial"],
    "Flash": ["Flash did not fire", "Flash fired", "Flash did not fire, compulsory flash mode",
              "Flash fired, auto mode, return light detected"],
    "White Balance Mode": ["Auto white balance", "Manual white balance"],
    "Exposure Program": ["Program Normal", "Aperture Priority", "Shutter Priority", "Manual"],
    "Scene Capture Type": ["Standard", "Landscape", "Portrait", "Night"],
    "Color Space": ["sRGB", "Uncalibrated"],
    "Exposure Mode": ["Auto Exposure", "Manual Exposure", "Auto Bracket"],
    "Exposure Bias Value": ["0 EV", "-1/3 EV", "+2/3 EV", "-1 EV"],
    "Sensing Method": ["One-chip color area", "Not defined"],
    "Software": ["Ver.1.00", "Adobe Photoshop CS6", "GIMP 2.10"],
    "Exif Image Width": ["4000", "6000", "3264"],
    "Exif Image Height": ["3000", "4000", "2448"],
    "Orientation": ["Horizontal (normal)", "Rotated 90 CW"],
    "Resolution Unit": ["inches", "cm"],
    "Digital Zoom Ratio": ["1.0", "2.0"],
    "Focal Length 35": ["28", "50", "105"],
}


def synthetic_exif_corpus() -> list[str]:
    """EXIF-like sentences covering common tags and values, deterministically.

    Used to build a tokenizer when no photo collection is at hand (tests,
    random-init models). It is text only: no pixels, no real photos.

    Examples
    --------
    >>> corpus = synthetic_exif_corpus()
    >>> corpus[0].startswith("Make: ")
    True
    """
    lines = []
    value_lists = list(_VALUES.items())
    for (make, models_), shift in zip(_MAKES.items(), itertools.count()):
        for model in models_:
            parts = [f"Make: {make}", f"Model: {model}"]
            for j, (tag, values) in enumerate(value_lists):
                parts.append(f"{tag}: {values[(shift + j) % len(values)]}")
            lines.append(", ".join(parts))
    for tag, values in value_lists:
        lines.extend(f"{tag}: {v}" for v in values)
    return lines


def _exif_vocabulary(texts: list[str], vocab_size: int, normalizer, pre_tokenizer) -> dict[str, int]:
    """A deterministic WordPiece vocabulary: every character (alone and as a
    ``##`` continuation, so any word can be spelt) plus the most frequent
    whole words, ties broken alphabetically.

    (The ``tokenizers`` WordPiece trainer breaks frequency ties in hash
    order, so the same corpus gives different vocabularies from run to run.)
    """
    counts: Counter = Counter()
    for text in texts:
        words = pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
        counts.update(word for word, _ in words)
    # printable ASCII always, so any ASCII word can be spelt, plus the corpus's own characters
    ascii_chars = string.ascii_letters + string.digits + string.punctuation
    chars = sorted({normalizer.normalize_str(c) for c in ascii_chars} - {""} | {ch for word in counts for ch in word})
    base = SPECIAL_TOKENS + chars + [f"##{ch}" for ch in chars]
    room = max(vocab_size - len(base), 0)
    words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if len(w) > 1][:room]
    return {token: i for i, token in enumerate(base + words)}


def build_exif_tokenizer(
    texts: Iterable[str] | None = None, vocab_size: int = 4096, lowercase: bool = True, model_max_length: int = 256
) -> DistilBertTokenizerFast:
    """Learn a WordPiece vocabulary from EXIF strings.

    Parameters
    ----------
    texts : iterable of str, optional
        EXIF sentences such as :func:`exifclip.exif.exif_to_text` writes.
        Defaults to :func:`synthetic_exif_corpus`.
    vocab_size : int, default=4096
        Upper bound on the vocabulary; small corpora give fewer tokens. The
        vocabulary is the same for the same corpus, run after run.
    lowercase : bool, default=True
        Lower-case and strip accents first, as ``distilbert-base-uncased``.
    model_max_length : int, default=256
        Longest token sequence; longer texts are truncated.

    Returns
    -------
    DistilBertTokenizerFast

    Examples
    --------
    >>> tok = build_exif_tokenizer(["Make: Canon, Exposure Time: 1/500"] * 3)
    >>> tok.tokenize("Exposure Time: 1/500")
    ['exposure', 'time', ':', '1', '/', '500']
    """
    texts = list(synthetic_exif_corpus() if texts is None else texts)
    norm = [normalizers.NFD()]
    if lowercase:
        norm += [normalizers.Lowercase(), normalizers.StripAccents()]
    normalizer = normalizers.Sequence(norm)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer = Tokenizer(models.WordPiece(_exif_vocabulary(texts, vocab_size, normalizer, pre_tokenizer),
                                           unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    tokenizer.decoder = decoders.WordPiece()
    return DistilBertTokenizerFast(
        tokenizer_object=tokenizer,
        do_lower_case=lowercase,
        model_max_length=model_max_length,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
