"""Small datasets in the real on-disk formats, fake policies/segmenters with known answers, and a launcher.

Writers: :func:`write_folder_pair` (images/ + masks/), :func:`write_cod10k` (COD10K-v3/Test/{Image,GT_Object}),
:func:`write_refcoco` (Refer_Segm/refcoco/refs(unc).p + instances.json with polygon, uncompressed-RLE and
compressed-RLE segmentations, COCO images under Refer_Segm/coco_2014/train2014) and :func:`write_reasonseg`
(ReasonSeg/val/X.jpg + LabelMe-style X.json with target, ignore and flag shapes).

Fakes: :class:`RedBoxPolicy` answers the box around the red pixels of the model-frame image it is shown;
:class:`AnswerBook` answers a fixed text per query; :class:`BoxSegmenter` returns the prompt boxes as masks.

Run as a script (``python tests/fakedata.py eval ...``, also under ``accelerate launch``) it is ``segr1`` with
``segr1.commands.eval.build_pipeline`` replaced by RedBoxPolicy + GrabCut, so distributed runs can be tested
with answers whose values are known.
"""

from __future__ import annotations

import json
import pickle
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

RED = (220, 30, 30)
BLUE = (30, 60, 220)


# ------------------------------------------------------------------------------------------------ scenes


def load_script(name: str, *, register: bool = False):
    """``scripts/<name>.py`` imported as a module (``register``: also put it in ``sys.modules``, for scripts
    whose dataclasses or pickling look themselves up there)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def textured(width: int, height: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8 greenish-grey noise background."""
    rng = np.random.default_rng(seed)
    image = rng.integers(60, 150, size=(height, width, 3), dtype=np.uint8)
    image[..., 0] //= 2
    return image


def paint(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], seed: int = 0) -> None:
    """Paint ``mask`` with ``color`` plus a little noise, in place."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(-12, 13, size=(int(mask.sum()), 3))
    image[mask] = np.clip(np.array(color) + noise, 0, 255).astype(np.uint8)


def ellipse_mask(width: int, height: int, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0


def red_scene(width: int, height: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Textured background with one red ellipse at a seeded place; returns (image, mask (H, W) bool)."""
    rng = np.random.default_rng(seed + 1000)
    rx, ry = rng.uniform(0.12, 0.25) * width, rng.uniform(0.12, 0.25) * height
    cx, cy = rng.uniform(rx + 2, width - rx - 2), rng.uniform(ry + 2, height - ry - 2)
    image = textured(width, height, seed)
    mask = ellipse_mask(width, height, cx, cy, rx, ry)
    paint(image, mask, RED, seed)
    return image, mask


def save_rgb(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def save_mask(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(path)


# ------------------------------------------------------------------------------------------------ writers


def write_folder_pair(
    root: Path,
    n: int,
    *,
    size: tuple[int, int] = (96, 72),
    corrupt: Sequence[str] = (),
    no_mask: Sequence[str] = (),
) -> dict[str, np.ndarray]:
    """``root/images/s<i>.png`` + ``root/masks/s<i>.png`` red scenes; ``corrupt`` stems get garbage image
    bytes, ``no_mask`` stems get an image only. Returns the masks by stem (those written)."""
    masks = {}
    for i in range(n):
        stem = f"s{i}"
        image, mask = red_scene(size[0] + 8 * (i % 3), size[1], seed=i)
        if stem in corrupt:
            (root / "images").mkdir(parents=True, exist_ok=True)
            (root / "images" / f"{stem}.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
        else:
            save_rgb(root / "images" / f"{stem}.png", image)
        if stem not in no_mask:
            save_mask(root / "masks" / f"{stem}.png", mask)
            masks[stem] = mask
    return masks


COD_STEMS = (
    "COD10K-CAM-1-Aquatic-1-BatFish-3",
    "COD10K-CAM-2-Terrestrial-23-Cat-1",
    "COD10K-CAM-3-Flying-53-Bird-3045",
)


def write_cod10k(root: Path) -> None:
    """COD10K-v3/Test/{Image/*.jpg, GT_Object/*.png}: three camouflaged scenes and one non-camouflaged image."""
    for i, stem in enumerate(COD_STEMS):
        image, mask = red_scene(80 + 8 * i, 64, seed=50 + i)
        save_rgb(root / f"COD10K-v3/Test/Image/{stem}.jpg", image)
        save_mask(root / f"COD10K-v3/Test/GT_Object/{stem}.png", mask)
    save_rgb(root / "COD10K-v3/Test/Image/COD10K-NonCAM-5-Background-1-Sky-4001.jpg", textured(40, 30, 9))


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE: column-major run lengths, starting with a run of zeros."""
    flat = mask.flatten(order="F").astype(np.uint8)
    counts, current, run = [], 0, 0
    for v in flat:
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = int(v), 1
    counts.append(run)
    return {"counts": counts, "size": list(mask.shape)}


def _sentence(text: str, sent_id: int) -> dict:
    return {"tokens": text.split(), "raw": text, "sent_id": sent_id, "sent": text}


REFER_SENTENCES = (
    "the red block on the left",
    "red thing",
    "the blue block",
    "the blue l shape",
    "a tiny red square with a hole",
)


def write_refcoco(root: Path) -> None:
    """A tiny RefCOCO (``val`` split) in the refer format.

    Image 1 (64x48): a red rectangle (polygon annotation, two sentences) and a blue rectangle (uncompressed
    RLE). Image 2 (40x32): a blue L shape (compressed RLE) and a red square with a hole (two polygon rings,
    the inner one not a hole in COCO's union semantics: both rings are filled).
    """
    from pycocotools import mask as mask_utils

    folder = root / "Refer_Segm" / "refcoco"
    images_dir = root / "Refer_Segm" / "coco_2014" / "train2014"
    folder.mkdir(parents=True)
    f1, f2 = "COCO_train2014_000000000001.jpg", "COCO_train2014_000000000002.jpg"
    im1 = textured(64, 48, 1)
    red = np.zeros((48, 64), dtype=bool)
    red[10:30, 6:26] = True  # polygon (6,10)-(26,30)
    blue = np.zeros((48, 64), dtype=bool)
    blue[20:40, 38:58] = True
    paint(im1, red, RED)
    paint(im1, blue, BLUE)
    save_rgb(images_dir / f1, im1)
    im2 = textured(40, 32, 2)
    ell = np.zeros((32, 40), dtype=bool)
    ell[4:26, 5:12] = True
    ell[18:26, 5:30] = True
    sq = np.zeros((32, 40), dtype=bool)
    sq[3:12, 26:36] = True
    paint(im2, ell, BLUE)
    paint(im2, sq, RED)
    save_rgb(images_dir / f2, im2)
    compressed = mask_utils.encode(np.asfortranarray(ell.astype(np.uint8)))
    instances = {
        "images": [
            {"id": 1, "file_name": f1, "height": 48, "width": 64},
            {"id": 2, "file_name": f2, "height": 32, "width": 40},
        ],
        "annotations": [
            {"id": 11, "image_id": 1, "category_id": 1, "segmentation": [[6, 10, 26, 10, 26, 30, 6, 30]]},
            {"id": 12, "image_id": 1, "category_id": 1, "segmentation": uncompressed_rle(blue)},
            {
                "id": 21,
                "image_id": 2,
                "category_id": 2,
                "segmentation": {"counts": compressed["counts"].decode("ascii"), "size": [32, 40]},
            },
            {
                "id": 22,
                "image_id": 2,
                "category_id": 1,
                "segmentation": [
                    [26, 3, 36, 3, 36, 12, 26, 12],
                    [29.0, 6.0, 32.0, 6.0, 32.0, 9.0, 29.0, 9.0],
                ],
            },
        ],
        "categories": [{"id": 1, "name": "block"}, {"id": 2, "name": "shape"}],
    }
    (folder / "instances.json").write_text(json.dumps(instances))
    s = REFER_SENTENCES
    refs = [
        {"ref_id": 0, "ann_id": 11, "image_id": 1, "split": "val", "category_id": 1, "sent_ids": [0, 1],
         "file_name": f1, "sentences": [_sentence(s[0], 0), _sentence(s[1], 1)]},
        {"ref_id": 1, "ann_id": 12, "image_id": 1, "split": "val", "category_id": 1, "sent_ids": [2],
         "file_name": f1, "sentences": [_sentence(s[2], 2)]},
        {"ref_id": 2, "ann_id": 21, "image_id": 2, "split": "val", "category_id": 2, "sent_ids": [3],
         "file_name": f2, "sentences": [_sentence(s[3], 3)]},
        {"ref_id": 3, "ann_id": 22, "image_id": 2, "split": "val", "category_id": 1, "sent_ids": [4],
         "file_name": f2, "sentences": [_sentence(s[4], 4)]},
        {"ref_id": 4, "ann_id": 11, "image_id": 1, "split": "train", "category_id": 1, "sent_ids": [5],
         "file_name": f1, "sentences": [_sentence("not in val", 5)]},
    ]  # fmt: skip
    with open(folder / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f, protocol=2)


def _shape(label: str, points: list[list[float]]) -> dict:
    return {"label": label, "points": points, "group_id": None, "shape_type": "polygon", "flags": {}}


def _rect(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


REASON_QUERIES = {
    "a_table": "Where would you put a cup on this table?",
    "b_lamp": "What gives light in this room?",
}


def write_reasonseg(root: Path, *, broken: bool = True) -> None:
    """ReasonSeg/val: ``a_table`` (a target rectangle (8,6)-(40,28) with an ignore square (16,12)-(24,20)
    inside it and a ``flag`` shape), ``b_lamp`` (a target without ignore) and, with ``broken``, ``c_broken``
    (JSON without shapes: the dataset cannot build that sample)."""
    val = root / "ReasonSeg" / "val"
    val.mkdir(parents=True)
    annos = {
        "a_table": [_shape("target", _rect(8, 6, 40, 28)), _shape("ignore", _rect(16, 12, 24, 20)),
                    _shape("flag", _rect(0, 0, 47, 35))],
        "b_lamp": [_shape("target", _rect(30, 4, 44, 14))],
    }  # fmt: skip
    for i, (stem, shapes) in enumerate(annos.items()):
        image = textured(48, 36, 20 + i)
        target = np.zeros((36, 48), dtype=bool)
        x0, y0, x1, y1 = (int(v) for v in (*shapes[0]["points"][0], *shapes[0]["points"][2]))
        target[y0 : y1 + 1, x0 : x1 + 1] = True
        paint(image, target, RED)
        Image.fromarray(image).save(val / f"{stem}.jpg", quality=95)
        anno = {"text": [REASON_QUERIES[stem], "another query"], "is_sentence": True, "shapes": shapes}
        (val / f"{stem}.json").write_text(json.dumps(anno))
    if broken:
        Image.fromarray(textured(48, 36, 30)).save(val / "c_broken.jpg")
        (val / "c_broken.json").write_text(json.dumps({"text": ["what?"], "is_sentence": True}))


# ------------------------------------------------------------------------------------------------ fakes


def box_answer(box: Sequence[float], image_size: tuple[int, int], frame: int, think: str = "here") -> str:
    """Seg-R1 answer text of an IMAGE-frame box (x1, y1, x2, y2) scaled to the ``frame`` model frame."""
    w, h = image_size
    sx, sy = frame / w, frame / h
    x1, y1, x2, y2 = box
    return f"<think>{think}</think> <bbox>[{x1 * sx:.4f},{y1 * sy:.4f},{x2 * sx:.4f},{y2 * sy:.4f}]</bbox>"


class RedBoxPolicy:
    """Answers the box around the red pixels of the model-frame image (model frame), or no box."""

    name = "red-box"

    def generate(self, images, instructions, num_samples=1, temperature=0.0, max_new_tokens=256, system=None):
        out = []
        for im in images:
            arr = np.asarray(im.convert("RGB")).astype(int)
            ys, xs = np.nonzero((arr[..., 0] > 170) & (arr[..., 1] < 90) & (arr[..., 2] < 90))
            if xs.size == 0:
                text = "<think>nothing red</think>"
            else:
                text = f"<think>red</think> <bbox>[{xs.min()},{ys.min()},{xs.max()},{ys.max()}]</bbox>"
            out.append([text] * num_samples)
        return out


class AnswerBook:
    """Answers each instruction with the text registered for the query it contains (else ``default``)."""

    name = "answer-book"

    def __init__(self, answers: dict[str, str], default: str = "no idea") -> None:
        self.answers = answers
        self.default = default
        self.calls = 0

    def generate(self, images, instructions, num_samples=1, temperature=0.0, max_new_tokens=256, system=None):
        self.calls += 1
        out = []
        for instruction in instructions:
            hits = [a for q, a in self.answers.items() if q.rstrip(".") in instruction]
            out.append([hits[0] if hits else self.default] * num_samples)
        return out


class BoxSegmenter:
    """Masks = the union of the prompt's boxes (IMAGE frame, inclusive pixel bounds, rounded)."""

    name = "box"

    def segment(self, image, prompts):
        h, w = np.asarray(image).shape[:2]
        masks = []
        for prompt in prompts:
            mask = np.zeros((h, w), dtype=bool)
            for x1, y1, x2, y2 in prompt.boxes:
                mask[round(y1) : round(y2) + 1, round(x1) : round(x2) + 1] = True
            masks.append(mask)
        return masks


def red_box_pipeline(task: str = "foreground", frame: int = 224, batch_size: int = 2, **kwargs):
    """SegR1Pipeline(RedBoxPolicy, GrabCut); ``kwargs``: other pipeline arguments (prompt_style, protocol)."""
    from segr1.pipeline import SegR1Pipeline
    from segr1.segmenters import load_segmenter

    return SegR1Pipeline(
        RedBoxPolicy(), load_segmenter("grabcut"), task=task, frame=frame, batch_size=batch_size, **kwargs
    )


def _launch(argv: list[str]) -> int:
    """``segr1 ARGV`` with eval's pipeline = RedBoxPolicy + GrabCut (frame 224)."""
    import segr1.commands.eval as eval_command
    from segr1.cli import main

    def build(task, model, segmenter, *, frame, max_new_tokens, batch_size, device, **kwargs):
        return red_box_pipeline(task, frame or 224, batch_size, **kwargs)

    eval_command.build_pipeline = build
    return main(argv)


if __name__ == "__main__":
    sys.exit(_launch(sys.argv[1:]))
