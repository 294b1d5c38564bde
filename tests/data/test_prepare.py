import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from alexnet.data import manifest as mf
from alexnet.data.images import decode_jpeg
from alexnet.data.prepare import ChunkResult, prepare, read_record
from alexnet.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


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
    record = out / ".chunks" / "val-00000.json"
    record.write_bytes(record.read_bytes()[:40])  # a record cut short: rebuilt, not a traceback
    capsys.readouterr()
    second = prepare(tiny_src, out, chunk_size=20)
    log = capsys.readouterr().out
    assert "train chunk 1/2: 20 images, already done, kept" in log
    assert "train chunk 2/2: 16 images, 0 skipped" in log
    assert "val chunk 1/1: 15 images, 0 skipped" in log
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


@pytest.mark.parametrize("text", ["", "{not json", "[]", '{"key": "k", "started": true}', '{"key": "k", "shards": 3}'])
def test_an_unreadable_or_unfinished_chunk_record_counts_as_missing(tmp_path: Path, text: str) -> None:
    (tmp_path / ".chunks").mkdir()
    (tmp_path / ".chunks" / "val-00000.json").write_text(text)
    assert read_record(tmp_path, "val", "00000", "k") is None


def test_a_finished_record_is_kept_only_under_its_key_with_its_shards(tmp_path: Path) -> None:
    (tmp_path / ".chunks").mkdir()
    (tmp_path / "val" / "chunk-00000").mkdir(parents=True)
    (tmp_path / "val" / "chunk-00000" / "a.parquet").write_bytes(b"")
    result = ChunkResult(shards=["val/chunk-00000/a.parquet"], images=1, skipped=[], mean_sum=[0.0] * 3,
                         moment_sum=[[0.0] * 3] * 3)
    (tmp_path / ".chunks" / "val-00000.json").write_text(json.dumps({"key": "k", **result.__dict__}))
    assert read_record(tmp_path, "val", "00000", "k") == result
    assert read_record(tmp_path, "val", "00000", "other") is None
    (tmp_path / "val" / "chunk-00000" / "a.parquet").unlink()
    assert read_record(tmp_path, "val", "00000", "k") is None


def test_adding_a_class_rebuilds_every_chunk_whose_labels_moved(ray_session, tiny_src: Path, tmp_path: Path,
                                                                capsys) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    shutil.copytree(tiny_src, src)
    prepare(src, out, chunk_size=20)
    new_class = src / "train" / "a0000000"  # sorts first: every old label moves up by one
    new_class.mkdir()
    for f in sorted((src / "train").glob("d*/*.JPEG"))[:2]:
        shutil.copy(f, new_class / f.name)
    capsys.readouterr()
    manifest = prepare(src, out, chunk_size=20)
    assert "val chunk 1/1: 15 images, 0 skipped" in capsys.readouterr().out
    classes = json.loads((out / mf.CLASSES).read_text())
    assert classes[0] == "a0000000"
    for split, n in (("train", 38), ("val", 15)):
        rows = pq.read_table(manifest.shard_paths(out, split)).to_pylist()
        assert len(rows) == n
        assert all(classes[r["label"]] == r["wnid"] == Path(r["path"]).parent.name for r in rows)


@pytest.fixture
def src_copy(tiny_src: Path, tmp_path: Path) -> Path:
    """A source the test may write into."""
    return Path(shutil.copytree(tiny_src, tmp_path / "src"))


@pytest.mark.parametrize("inside", [".", "shards"])
def test_out_that_is_or_lies_inside_src_is_refused(src_copy: Path, inside: str) -> None:
    out = src_copy / inside
    with pytest.raises(UserError, match=rf"--out {out} is inside --src {src_copy}: .*choose an --out outside"):
        prepare(src_copy, out)
    assert not (src_copy / "shards").exists() and not (src_copy / ".lock").exists()


def test_out_that_is_a_file_is_refused(tiny_src: Path, tmp_path: Path) -> None:
    out = tmp_path / "shards"
    out.write_text("mine")
    with pytest.raises(UserError, match=rf"--out {out} is a file"):
        prepare(tiny_src, out)
    assert out.read_text() == "mine"


def test_out_with_other_files_and_no_chunk_records_is_refused_untouched(tiny_src: Path, tmp_path: Path) -> None:
    out = tmp_path / "photos"
    (out / "train" / "chunk-00000").mkdir(parents=True)
    (out / "train" / "chunk-00000" / "holiday.jpg").write_bytes(b"mine")
    with pytest.raises(UserError, match=rf"--out {out} holds other files \(1, first: train\) and was not prepared"):
        prepare(tiny_src, out)
    assert sorted(p.name for p in out.iterdir()) == ["train"]  # no lock, no .chunks/ left behind
    assert (out / "train" / "chunk-00000" / "holiday.jpg").read_bytes() == b"mine"


def test_chunk_folder_no_record_accounts_for_is_refused_and_kept(tiny_src: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / ".chunks").mkdir(parents=True)
    (out / ".chunks" / "train-00000.json").write_text("{}")  # ours: may be replaced
    (out / "train" / "chunk-00000").mkdir(parents=True)
    stray = out / "val" / "chunk-00003"
    stray.mkdir(parents=True)
    (stray / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=rf"--out {out}: {stray} \(1 such\) is not a chunk this job recorded"):
        prepare(tiny_src, out)
    assert (stray / "notes.txt").read_text() == "mine" and (out / "train" / "chunk-00000").is_dir()


class Stop(Exception):
    """Ends a preparation at the point where the job would start Ray."""


def test_a_second_preparation_of_one_out_is_refused_naming_the_first(tiny_src: Path, tmp_path: Path) -> None:
    out, refused = tmp_path / "out", []

    def while_the_first_holds_out() -> None:
        with pytest.raises(UserError) as e:
            prepare(tiny_src, out)
        refused.append(str(e.value))
        raise Stop

    with pytest.raises(Stop):
        prepare(tiny_src, out, start_ray=while_the_first_holds_out)
    assert len(refused) == 1
    assert f"--out {out} is in use by pid {os.getpid()} on {socket.gethostname()} since " in refused[0]
    assert "use another --out" in refused[0]
    assert not (out / ".lock").exists()  # released by the first


def test_a_lock_left_by_a_dead_preparation_is_taken_over(tiny_src: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "then",
                                           "argv": ["jobs/prepare_data.py"]}))

    def started() -> None:
        assert json.loads((out / ".lock").read_text())["pid"] == os.getpid()
        raise Stop

    with pytest.raises(Stop):
        prepare(tiny_src, out, start_ray=started)
    assert f"taking over {out / '.lock'}: left by pid {dead.pid}" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["src", "out"])
def test_the_job_checks_src_and_out_before_it_starts_ray(tiny_src: Path, tmp_path: Path, bad: str) -> None:
    src, out = (tmp_path / "missing", tmp_path / "out") if bad == "src" else (tiny_src, tmp_path / "file")
    (tmp_path / "file").write_text("")
    env = {**os.environ, "RAY_ADDRESS": "nowhere://ray"}  # any Ray start would fail with Ray's own error
    job = subprocess.run([sys.executable, "jobs/prepare_data.py", "--src", str(src), "--out", str(out)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert job.returncode == 1, job.stderr
    assert job.stderr.strip().splitlines()[-1].startswith(f"error: --{bad} ")
    assert "Traceback" not in job.stderr


def chunks_with_statistics(images: int, mean01: np.ndarray, cov: np.ndarray) -> list[ChunkResult]:
    """Two chunks whose images together have RGB mean `mean01` and covariance `cov`
    (the sums `process_batch` accumulates: per-image mean and E[x x^T])."""
    moment = cov + np.outer(mean01, mean01)
    sizes = [images // 2, images - images // 2]
    return [ChunkResult(shards=[], images=n, skipped=[], mean_sum=(n * mean01).tolist(),
                        moment_sum=(n * moment).tolist()) for n in sizes]


@pytest.mark.parametrize("below_minimum", [True, False])
def test_pca_statistics_are_the_training_sets_own_or_imagenets_below_the_minimum(
        tmp_path: Path, below_minimum: bool) -> None:
    """Which statistics the manifest (and manifest.json) carries: the training set's own
    mean and PCA from its moments, or, with fewer than MIN_IMAGES_FOR_OWN_PCA images, the
    ImageNet constants, all three of them, and `pca_source` says which. No Ray: the
    manifest is assembled from chunk results with known sums."""
    from alexnet.data.prepare import MIN_IMAGES_FOR_OWN_PCA, assemble_manifest

    train_images = MIN_IMAGES_FOR_OWN_PCA - 1 if below_minimum else MIN_IMAGES_FOR_OWN_PCA
    mean01 = np.array([0.5, 0.4, 0.3])
    eigvec = np.array([[2**-0.5, -(2**-0.5), 0.0], [2**-0.5, 2**-0.5, 0.0], [0.0, 0.0, 1.0]])  # columns
    eigval = np.array([0.04, 0.01, 0.0025])
    results = {"train": chunks_with_statistics(train_images, mean01, eigvec @ np.diag(eigval) @ eigvec.T),
               "val": chunks_with_statistics(4, np.array([0.1, 0.2, 0.3]), np.eye(3) * 0.09)}
    manifest = assemble_manifest(tmp_path, tmp_path, ["n0", "n1"], results)
    written = json.loads((tmp_path / mf.MANIFEST).read_text())
    for stats in (manifest, mf.Manifest.from_dict(written)):
        if below_minimum:
            assert stats.pca_source == "imagenet-constants"
            assert stats.rgb_mean == mf.IMAGENET_MEAN
            assert stats.pca_eigval == mf.IMAGENET_EIGVAL and stats.pca_eigvec == mf.IMAGENET_EIGVEC
        else:
            assert stats.pca_source == "train"
            assert np.allclose(stats.rgb_mean, [127.5, 102.0, 76.5])  # 255 x the training mean, not val's
            assert np.allclose(stats.pca_eigval, eigval)  # largest first
            assert np.allclose(np.abs(np.sum(np.array(stats.pca_eigvec) * eigvec, 0)), 1.0)  # same axes, any sign
            assert not np.allclose(stats.pca_eigval, mf.IMAGENET_EIGVAL, atol=1e-3)


def test_make_data_prepares_the_embedded_digits(ray_session, tmp_path: Path) -> None:
    """The command behind `make data`, read from the Makefile and run in this process."""
    import re
    import shlex

    from job_loader import load_job

    root = Path(__file__).resolve().parents[2]
    recipe = re.search(r"^\t\$\(PY\) jobs/prepare_data\.py (--digits .*)$", (root / "Makefile").read_text(), re.M)
    argv = shlex.split(recipe.group(1).replace("$(DATA)", str(tmp_path / "digits")))
    assert load_job("prepare_data").main(argv) == 0
    manifest, classes = mf.load(tmp_path / "digits")
    assert len(classes) == 10 and manifest.num_classes == 10
    assert (manifest.splits["train"].images, manifest.splits["val"].images) == (1438, 359)  # scikit-learn's 1,797
    assert manifest.pca_source == "train" and sum(s.skipped for s in manifest.splits.values()) == 0
    assert mf.class_names(tmp_path / "digits", classes) == [f"digit {d}" for d in range(10)]  # for the figures
