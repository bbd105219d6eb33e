"""Screen: train fast mode's windows on the EXIF text itself, not (only) on the exact-mode embedding.

A screening experiment for issue 18, outside the library: can fast mode get
closer to exact mode if the image tower learns, in fast mode, what the
contrastive recipe teaches it in exact mode? A trained fold model is
fine-tuned on crops of that fold's training photos (as
:func:`exifclip.training.distill.distill_fast_mode` cuts them). Each step,
every crop's trunk runs once and patch-sized windows are pooled from its
feature map (fast mode); each window's embedding is classified, with the
model's logit scale, against the frozen text tower's embeddings of every
training photo's EXIF text (plus this step's texts with their
``", Processing: JPEG q"`` suffix, for the crops re-compressed), its own
photo's text being the right answer: the text half of the contrastive loss,
with every training photo as a negative. ``--distill-weight`` adds
distillation's two cosine terms (fast and exact windows against the frozen
starting model's exact embeddings); ``--composite-p`` pastes another crop's
rectangle into a share of the crops, the windows mostly inside it labelled
with the donor's text.

``--distill-weight 0 --text-weight 1``: fast-mode-native fine-tuning;
``--distill-weight 1 --text-weight 0.03 --composite-p 0.5``: distillation
with a text term. Score the result with ``bench_unseen_cameras.py
--fold-models OUT_PATTERN --mode fast``.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/screen_fast_native.py --data ../shared/data --fold 0 \\
        --teacher 'CKPT/s16-4800/fold{k}' --out CKPT/native/fold0 --text-weight 1 --distill-weight 0
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_unseen_cameras import DEFAULT_SPLIT, fold_photos, load_split  # noqa: E402

from exifclip.modeling import load_model  # noqa: E402
from exifclip.modeling.dense import feature_stride  # noqa: E402
from exifclip.training.data import ExifPatchDataset  # noqa: E402
from exifclip.training.distill import FastModeDistillLoss, _jpeg, cut_crops, fast_window_embeddings  # noqa: E402
from exifclip.training.loop import lr_factor  # noqa: E402

CROP_SIZE, CROPS_PER_PHOTO, CROPS_PER_STEP, WINDOWS_PER_CROP, EXACT_WINDOWS = 320, 8, 8, 32, 64


def text_bank(model, texts: list[str]) -> torch.Tensor:
    """L2-normalised text embeddings of ``texts`` (no gradient: the text tower stays frozen)."""
    tokens = model.tokenizer(texts, padding=True, truncation=True, max_length=model.config.max_text_length,
                             return_tensors="pt")
    with torch.no_grad():
        return F.normalize(model.get_text_features(tokens["input_ids"], tokens["attention_mask"]).float(), dim=-1)


def window_owner(start: tuple[int, int], rect, host: int, donor, size: int) -> int:
    """Whose text a window has: the donor's when the pasted rectangle covers half of it or more."""
    if rect is None:
        return host
    y, x, h, w = rect
    wy, wx = start
    inter = max(0, min(wy + size, y + h) - max(wy, y)) * max(0, min(wx + size, x + w) - max(wx, x))
    return donor if inter >= size * size / 2 else host


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="../shared/data")
    ap.add_argument("--fold", type=int, required=True)
    ap.add_argument("--teacher", required=True, help="directory pattern with {k}: the fold's trained model")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--text-weight", type=float, default=1.0)
    ap.add_argument("--distill-weight", type=float, default=0.0)
    ap.add_argument("--composite-p", type=float, default=0.0)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    train_files, _ = fold_photos(load_split(Path(DEFAULT_SPLIT)), args.fold, Path(args.data))
    model = load_model(args.teacher.format(k=args.fold), use_cache=False).eval()
    size, stride = model.config.patch_size, feature_stride(model)
    dataset = ExifPatchDataset(train_files, patch_size=size, min_tags=11)
    crops, owners = [], []
    for i in range(len(dataset)):
        cut = cut_crops(dataset.image(i), CROPS_PER_PHOTO, CROP_SIZE, stride, rng)
        crops.extend(cut)
        owners.extend([i] * len(cut))
    texts = dataset.texts
    bank = torch.cat([text_bank(model, texts[a:a + 64]) for a in range(0, len(texts), 64)])
    scale = float(model.logit_scale.detach().exp())
    print(f"{len(texts)} photos, {len(crops)} crops, logit scale {scale:.2f}", flush=True)

    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    for name, p in model.named_parameters():  # the image tower trains; the text tower and scale stay
        p.requires_grad_(not (name.startswith("text_") or name == "logit_scale"))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    distill = FastModeDistillLoss(exact_weight=1.0, exact_windows=EXACT_WINDOWS)
    B, K = CROPS_PER_STEP, WINDOWS_PER_CROP
    log: dict[str, list[float]] = {"fast_cos": [], "exact_cos": [], "text_loss": [], "text_acc": []}
    t0 = time.perf_counter()
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = args.lr * lr_factor(step, args.steps, max(1, args.steps // 20))
        chosen = rng.choice(len(crops), B, replace=False)
        batch, pasted = [], []
        for j in chosen:
            crop, rect, donor = crops[j], None, None
            if args.composite_p and rng.random() < args.composite_p:
                d = int(rng.integers(len(crops)))
                h, w = rng.integers(CROP_SIZE // 4, 3 * CROP_SIZE // 4 + 1, 2)
                y, x = rng.integers(0, CROP_SIZE - h + 1), rng.integers(0, CROP_SIZE - w + 1)
                crop = crop.copy()
                crop[y:y + h, x:x + w] = crops[d][y:y + h, x:x + w]
                rect, donor = (y, x, h, w), owners[d]
            suffix = ""
            if rng.random() < 0.5:  # as distillation's jpeg_p, with the recipe's text for it
                quality = int(rng.integers(70, 101))
                crop, suffix = _jpeg(crop, quality), f", Processing: JPEG {quality}"
            batch.append(crop)
            pasted.append((owners[j], rect, donor, suffix))
        starts = rng.integers(0, CROP_SIZE - size + 1, (B, K, 2))
        labels, extra, extra_index = [], [], {}
        for b, (host, rect, donor, suffix) in enumerate(pasted):
            for k in range(K):
                who = window_owner(tuple(starts[b, k]), rect, host, donor, size)
                if suffix:
                    if (who, suffix) not in extra_index:
                        extra_index[(who, suffix)] = len(bank) + len(extra)
                        extra.append(texts[who] + suffix)
                    labels.append(extra_index[(who, suffix)])
                else:
                    labels.append(who)
        candidates = torch.cat([bank, text_bank(model, extra)]) if extra else bank
        crops_t = torch.from_numpy(np.stack(batch))
        fast = fast_window_embeddings(model, crops_t, starts)
        logits = scale * fast @ candidates.T
        target_labels = torch.tensor(labels)
        text_loss = F.cross_entropy(logits, target_labels)
        loss = args.text_weight * text_loss
        fast_cos = exact_cos = torch.tensor(float("nan"))
        if args.distill_weight:
            distill_loss, fast_cos, exact_cos = distill(model, teacher, crops_t, torch.from_numpy(starts), fast=fast)
            loss = loss + args.distill_weight * distill_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for key, value in (("fast_cos", fast_cos), ("exact_cos", exact_cos), ("text_loss", text_loss),
                           ("text_acc", (logits.argmax(1) == target_labels).float().mean())):
            log[key].append(float(value.detach()))
        if (step + 1) % 50 == 0:
            print(step + 1, {k: round(float(np.mean(v[-50:])), 4) for k, v in log.items()},
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
    model.eval().save_pretrained(args.out)
    summary = {**{k: v for k, v in vars(args).items() if k != "out"}, "wall_s": time.perf_counter() - t0,
               **{k: float(np.mean(v[-80:])) for k, v in log.items()}}
    (args.out / "screen_summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
