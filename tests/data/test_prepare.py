import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from alexnet.data import manifest as mf
from alexnet.data.images import decode_jpeg
from alexnet.data.prepare import prepare
from alexnet.errors import UserError


def test_prepared_shards_hold_256_jpegs_labels_and_statistics(tiny_data: Path, tiny_src: Path) -> None:
    manifest, classes = mf.load(tiny_data)
    assert classes == sorted(p.name for p in (tiny_src / "train").iterdir())
    assert manifest.splits["train"].images == 36 and manifest.splits["val"].images == 15
    table = pq.read_table(manifest.shard_paths(tiny_data, "train"))
    assert set(table.column_names) == {"image", "label", "wnid", "path", "index"}
    rows = table.to_pylist()
    assert decode_jpeg(rows[0]["image"]).shape == (256, 256, 3)
    assert all(classes[r["label"]] == r["wnid"] == Path(r["path"]).parent.name for r in rows)
    assert sorted(r["index"] for r in rows) == list(range(36))
    # grayscale scans: the mean is equal over channels, the first eigenvector is (1,1,1)/sqrt(3)
    assert np.allclose(manifest.rgb_mean, manifest.rgb_mean[0], atol=0.5)
    assert np.allclose(np.abs(np.array(manifest.pca_eigvec)[:, 0]), 3**-0.5, atol=1e-3)
    assert manifest.pca_source == "train"


def test_jpeg_bytes_are_stored_plain(tiny_data: Path) -> None:
    """JPEGs neither compress nor repeat; the actors read plain pages fastest."""
    manifest, _ = mf.load(tiny_data)
    for path in manifest.shard_paths(tiny_data, "train"):
        meta = pq.ParquetFile(path).metadata
        columns = [meta.row_group(g).column(c) for g in range(meta.num_row_groups) for c in range(meta.num_columns)]
        images = [c for c in columns if c.path_in_schema == "image"]
        assert images and all(c.compression == "UNCOMPRESSED" and "RLE_DICTIONARY" not in c.encodings for c in images)


@pytest.fixture
def unusual_tree(tmp_path: Path) -> Path:
    """Images that decode but are unusual, and files that cannot be decoded."""
    src = tmp_path / "src"
    for split in ("train", "val"):
        (src / split / "n0001").mkdir(parents=True)
    d = src / "train" / "n0001"
    rng = np.random.default_rng(0)
    photo = Image.fromarray((rng.random((300, 400, 3)) * 255).astype(np.uint8))
    photo.save(d / "rgb.JPEG")
    photo.convert("L").save(d / "gray.JPEG")
    photo.convert("CMYK").save(d / "cmyk.JPEG")
    photo.save(d / "png_inside.JPEG", format="PNG")
    full = (d / "rgb.JPEG").read_bytes()
    (d / "truncated.JPEG").write_bytes(full[: len(full) // 4])
    (d / "empty.JPEG").write_bytes(b"")
    (d / "text.JPEG").write_text("this is not an image")
    photo.save(src / "val" / "n0001" / "v.JPEG")
    return src


def test_unusual_images_are_kept_and_broken_files_reported(ray_session, unusual_tree: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    manifest = prepare(unusual_tree, out)
    assert manifest.splits["train"].images == 4 and manifest.splits["train"].skipped == 3
    kept = {Path(p).name for p in pq.read_table(manifest.shard_paths(out, "train"))["path"].to_pylist()}
    assert kept == {"rgb.JPEG", "gray.JPEG", "cmyk.JPEG", "png_inside.JPEG"}
    with (out / mf.SKIPPED).open() as f:
        skipped = {Path(r["path"]).name: r["reason"] for r in csv.DictReader(f)}
    assert set(skipped) == {"truncated.JPEG", "empty.JPEG", "text.JPEG"}
    assert all(skipped.values())
    assert "skipped 3 unreadable files" in capsys.readouterr().out


def test_rerun_resumes_finished_chunks_and_rebuilds_damaged_ones(ray_session, tiny_src: Path,
                                                                  tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    first = prepare(tiny_src, out, chunk_size=20)
    shutil.rmtree(out / "train" / "chunk-00001")  # as if the job died while writing it
    capsys.readouterr()
    second = prepare(tiny_src, out, chunk_size=20)
    log = capsys.readouterr().out
    assert "train chunk 1/2: 20 images, already done, kept" in log
    assert "train chunk 2/2: 16 images, 0 skipped" in log
    assert second.splits == first.splits or second.splits["train"].images == first.splits["train"].images
    assert mf.load(out)[0].splits["train"].images == 36


def test_flat_validation_folder_with_csv_or_devkit_labels(ray_session, tiny_src: Path, tmp_path: Path) -> None:
    src = tmp_path / "flat"
    shutil.copytree(tiny_src / "train", src / "train")
    (src / "val").mkdir()
    truth = {}
    for f in sorted((tiny_src / "val").glob("*/*.JPEG")):
        shutil.copy(f, src / "val" / f.name)
        truth[f.stem] = f.parent.name
    (tmp_path / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n" + "".join(f"{k},{w} 1 2 3 4\n" for k, w in truth.items()))
    synsets = sorted(set(truth.values()), reverse=True)  # devkit order differs from sorted order
    (tmp_path / "synsets.txt").write_text("".join(f"{w} name\n" for w in synsets))
    (tmp_path / "ground_truth.txt").write_text(
        "".join(f"{synsets.index(truth[k]) + 1}\n" for k in sorted(truth)))
    for labels, extra in ((tmp_path / "LOC_val_solution.csv", {}),
                          (tmp_path / "ground_truth.txt", {"val_synsets": tmp_path / "synsets.txt"})):
        out = tmp_path / f"out-{labels.suffix}"
        manifest = prepare(src, out, val_labels=labels, **extra)
        classes = json.loads((out / mf.CLASSES).read_text())
        rows = pq.read_table(manifest.shard_paths(out, "val")).to_pylist()
        assert len(rows) == 15
        assert all(classes[r["label"]] == truth[Path(r["path"]).stem] for r in rows)


def test_flat_validation_folder_without_labels_is_refused(tiny_src: Path, tmp_path: Path) -> None:
    src = tmp_path / "flat"
    shutil.copytree(tiny_src / "train", src / "train")
    (src / "val").mkdir()
    shutil.copy(next((tiny_src / "val").glob("*/*.JPEG")), src / "val")
    with pytest.raises(UserError, match="--val-labels"):
        prepare(src, tmp_path / "out")


def test_missing_train_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"--src .*no train/ folder"):
        prepare(tmp_path, tmp_path / "out")


def test_validation_classes_missing_from_train_are_refused(tiny_src: Path, tmp_path: Path) -> None:
    src = tmp_path / "mismatch"
    shutil.copytree(tiny_src, src)
    first = sorted((src / "val").iterdir())[0]
    first.rename(src / "val" / "n99999999")
    with pytest.raises(UserError, match=r"1 validation classes are not among train/'s classes \(first: n99999999\)"):
        prepare(src, tmp_path / "out")
