"""Folder-pair datasets and JSONL manifests."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segr1.data.folders import (
    FolderPairDataset,
    Manifest,
    find_pair_dirs,
    load_manifest,
    read_manifest,
    write_manifest,
)
from segr1.data.records import Sample


def _img(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower())
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(
        path, format=fmt or Image.registered_extensions()[path.suffix.lower()]
    )
    return path


def _tree(root: Path, images: list[str], masks: list[str], image_dir="images", mask_dir="masks") -> Path:
    for name in images:
        _img(root / image_dir / name)
    for name in masks:
        _img(root / mask_dir / name)
    return root


def test_pairs_by_stem_across_extensions_and_reports_unpaired(tmp_path, caplog):
    root = _tree(
        tmp_path / "DS",
        ["b.PNG", "a.jpg", "c.jpeg", "d.png", ".hidden.png"],
        ["a.png", "b.png", "c.PNG", "e.png"],
    )
    (root / "images" / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.WARNING, logger="segr1.data.folders"):
        ds = FolderPairDataset([root])
    assert [s.id for s in ds] == ["a", "b", "c"]  # sorted, deterministic
    assert len(ds) == 3 and ds[0].id == "a" and [s.id for s in ds[1:]] == ["b", "c"]
    a = ds[0]
    assert a.image == root / "images" / "a.jpg" and a.mask == root / "masks" / "a.png"
    assert a.task == "foreground" and a.text is None and a.meta == {"dataset": "DS"}
    assert ds.unpaired_images == [root / "images" / "d.png"]
    assert ds.unpaired_masks == [root / "masks" / "e.png"]
    assert "1 images without a mask" in caplog.text and "1 masks without an image" in caplog.text


def test_complete_folders_log_no_warning(tmp_path, caplog):
    root = _tree(tmp_path / "x", ["a.jpg"], ["a.png"])
    with caplog.at_level(logging.WARNING):
        ds = FolderPairDataset(root)  # a bare path is one root
    assert len(ds) == 1 and not caplog.records


@pytest.mark.parametrize(
    "image_dir,mask_dir",
    [
        ("Imgs", "GT"),
        ("Image", "GT_Object"),
        ("im", "gt"),
        ("DUTS-TE-Image", "DUTS-TE-Mask"),
        ("IMAGES", "Masks"),
    ],
)
def test_benchmark_style_folder_names(tmp_path, image_dir, mask_dir):
    root = _tree(tmp_path / "bench", ["x.jpg"], ["x.png"], image_dir, mask_dir)
    assert find_pair_dirs(root) == (root / image_dir, root / mask_dir)
    assert [s.id for s in FolderPairDataset([root])] == ["x"]


def test_unknown_layout_and_missing_root_errors(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "stuff").mkdir()
    with pytest.raises(ValueError, match="photos"):
        FolderPairDataset([tmp_path])
    with pytest.raises(FileNotFoundError):
        FolderPairDataset([tmp_path / "absent"])
    with pytest.raises(FileNotFoundError):
        FolderPairDataset([(tmp_path / "photos", tmp_path / "absent")])
    with pytest.raises(ValueError, match="at least one"):
        FolderPairDataset([])
    with pytest.raises(ValueError, match="task"):
        FolderPairDataset([(tmp_path / "photos", tmp_path / "stuff")], task="nonsense")


def test_several_roots_explicit_pairs_names_and_id_prefixes(tmp_path):
    r1 = _tree(tmp_path / "one", ["a.jpg", "b.jpg"], ["a.png", "b.png"])
    _tree(tmp_path / "two", ["a.png"], ["a.png"], "pics", "labels_here")
    pair = (tmp_path / "two" / "pics", tmp_path / "two" / "labels_here")
    ds = FolderPairDataset([r1, pair])
    assert [s.id for s in ds] == ["one/a", "one/b", "two/a"]
    assert [s.meta["dataset"] for s in ds] == ["one", "one", "two"]
    named = FolderPairDataset([r1, pair], names=["first", "second"])
    assert [s.id for s in named] == ["first/a", "first/b", "second/a"]
    with pytest.raises(ValueError, match="duplicate sample id"):
        FolderPairDataset([r1, pair], names=["same", "same"])
    with pytest.raises(ValueError, match="names"):
        FolderPairDataset([r1, pair], names=["only-one"])


def test_ambiguous_stems_are_skipped_and_reported(tmp_path, caplog):
    root = _tree(tmp_path / "r", ["a.jpg", "a.png", "b.jpg"], ["a.png", "b.png"])
    with caplog.at_level(logging.WARNING):
        ds = FolderPairDataset([root])
    assert [s.id for s in ds] == ["b"]
    assert ds.ambiguous == [[root / "images" / "a.jpg", root / "images" / "a.png"]]
    assert "1 ambiguous" in caplog.text


def test_images_without_masks_folder_and_recursive_pairing(tmp_path):
    _tree(tmp_path / "r", ["a.jpg", "sub/b.jpg"], ["a.png", "sub/b.png"])
    flat = FolderPairDataset([(tmp_path / "r" / "images", None)])
    assert [(s.id, s.mask) for s in flat] == [("a", None)]
    deep = FolderPairDataset([tmp_path / "r"], recursive=True)
    assert [s.id for s in deep] == ["a", "sub/b"]
    assert deep[1].mask == tmp_path / "r" / "masks" / "sub" / "b.png"


# ------------------------------------------------------------------------------------------------ manifests


def test_manifest_round_trip_with_relative_paths(tmp_path):
    root = tmp_path / "data"
    samples = [
        Sample(
            "a", root / "images" / "a.png", root / "masks" / "a.png", None, "foreground", {"dataset": "d"}
        ),
        Sample("b", root / "images" / "b.png", None, "the red star", "referring", {"k": [1, 2]}),
        Sample("c", tmp_path / "elsewhere" / "c.jpg", None, None, "reasoning", {}),
    ]
    path = write_manifest(samples, root / "manifest.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["image"] == "images/a.png" and lines[0]["mask"] == "masks/a.png"
    assert lines[2]["image"] == (tmp_path / "elsewhere" / "c.jpg").as_posix()  # outside: absolute
    assert set(lines[0]) == {"id", "image", "mask", "text", "task", "meta"}
    back = read_manifest(path)
    assert back == samples


def test_manifest_relative_paths_follow_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    samples = [Sample("a", Path("data/images/a.png"), Path("data/masks/a.png"))]
    write_manifest(samples, Path("data/m.jsonl"))
    assert json.loads((tmp_path / "data" / "m.jsonl").read_text())["image"] == "images/a.png"
    back = read_manifest("data/m.jsonl")
    assert back[0].image == tmp_path / "data" / "images" / "a.png"
    write_manifest(back, Path("data/m.jsonl"))  # rewriting what was read keeps the same relative paths
    assert json.loads((tmp_path / "data" / "m.jsonl").read_text())["mask"] == "masks/a.png"


def test_bad_manifest_lines_are_counted_with_line_numbers(tmp_path, caplog):
    path = tmp_path / "m.jsonl"
    lines = [
        json.dumps({"id": "ok1", "image": "a.png", "mask": "a_gt.png"}),
        "{not json",
        "",
        json.dumps(["a", "list"]),
        json.dumps({"image": "no-id.png"}),
        json.dumps({"id": "t", "image": "t.png", "task": "dance"}),
        json.dumps({"id": "ok1", "image": "dup.png"}),
        json.dumps({"id": "m", "image": "m.png", "mask": 5}),
        json.dumps({"id": "x", "image": "x.png", "meta": "str"}),
        json.dumps(
            {"id": "ok2", "image": "/abs/b.png", "text": "the cat", "task": "referring", "split": "val"}
        ),
    ]
    path.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="segr1.data.folders"):
        manifest = load_manifest(path)
    assert isinstance(manifest, Manifest)
    assert [s.id for s in manifest.samples] == ["ok1", "ok2"]
    assert [e.line for e in manifest.errors] == [2, 4, 5, 6, 7, 8, 9]
    assert "duplicate id" in manifest.errors[4].message and "dance" in manifest.errors[3].message
    ok1, ok2 = manifest.samples
    assert ok1.image == tmp_path / "a.png" and ok1.mask == tmp_path / "a_gt.png" and ok1.task == "foreground"
    assert ok2.image == Path("/abs/b.png") and ok2.mask is None and ok2.text == "the cat"
    assert ok2.meta == {"split": "val"}  # unknown top-level keys go to meta
    assert "skipped 7 bad line(s)" in caplog.text and "line 2" in caplog.text
    assert [s.id for s in read_manifest(path)] == ["ok1", "ok2"]


def test_manifest_all_bad_raises_empty_is_fine_and_missing_raises(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("nope\n{}\n")
    with pytest.raises(ValueError, match="no valid line.*line 1"):
        read_manifest(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    assert read_manifest(empty) == []
    with pytest.raises(FileNotFoundError):
        read_manifest(tmp_path / "absent.jsonl")


def test_manifest_check_files(tmp_path):
    _img(tmp_path / "a.png")
    path = tmp_path / "m.jsonl"
    path.write_text(
        json.dumps({"id": "a", "image": "a.png"}) + "\n" + json.dumps({"id": "b", "image": "b.png"}) + "\n"
    )
    assert len(read_manifest(path)) == 2
    checked = load_manifest(path, check_files=True)
    assert [s.id for s in checked.samples] == ["a"]
    assert checked.errors[0].line == 2 and "not found" in checked.errors[0].message


def test_write_manifest_refuses_arrays_and_unserialisable_meta_without_clobbering(tmp_path):
    path = write_manifest([Sample("a", tmp_path / "a.png")], tmp_path / "m.jsonl")
    before = path.read_text()
    with pytest.raises(ValueError, match="'b'.*array|ndarray"):
        write_manifest([Sample("b", np.zeros((2, 2, 3), np.uint8))], path)
    with pytest.raises(ValueError, match="JSON"):
        write_manifest([Sample("c", tmp_path / "c.png", meta={"x": object()})], path)
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl"]


def test_folder_dataset_to_manifest_round_trip(tmp_path):
    root = _tree(tmp_path / "DS", ["a.jpg", "b.png"], ["a.png", "b.png"])
    ds = FolderPairDataset([root])
    path = write_manifest(ds, root / "manifest.jsonl")
    assert read_manifest(path) == list(ds)
