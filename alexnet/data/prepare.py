"""Convert an ImageNet-style tree into Parquet shards of 256x256 JPEGs, as a Ray Data job.

The work is cut into chunks of files. Each chunk is decoded in parallel Ray tasks,
written to ``<out>/<split>/chunk-NNNNN/`` and recorded in ``<out>/.chunks/``: first as
started (from then on the folder is the job's to replace), then as finished. A rerun on
the same ``--out`` keeps a finished chunk only if its key, everything its rows depend on,
is unchanged, so an interrupted preparation resumes where it stopped and a chunk whose
files, labels or position changed, or that was cut short, is rebuilt.

``--out`` holds the user's data next to ours, so the job deletes only folders that its
own records name, refuses an ``--out`` that it did not prepare, and locks it while it runs.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from alexnet.data import manifest as mf
from alexnet.data.images import SHARD_SIZE, encode_jpeg, load_as_rgb_square
from alexnet.data.layout import SourceImage, find_images
from alexnet.errors import UserError
from alexnet.locks import LOCK_NAME, exclusive_lock
from alexnet.store import Location, ObjectPath, as_location, check_reachable, remove_tree, write_atomic

MIN_IMAGES_FOR_OWN_PCA = 10
SHUFFLE_SEED = 0
# JPEG bytes neither compress nor repeat: stored plain, the training actors read a shard
# in half the time (5.5 against 11 us per digit image, 16 against 25 on photo-like JPEGs).
PARQUET_ENCODING = {"compression": "none", "use_dictionary": ["wnid"]}
ROWS_PER_SHARD = 1000
RECORDS = ".chunks"
SPLITS = ("train", "val")
KEY_VERSION = 2  # raise it whenever the same source files would give different rows


@dataclass
class ChunkResult:
    shards: list[str]
    images: int
    skipped: list[tuple[str, str]]  # (path, reason)
    mean_sum: list[float]  # sum over images of the per-image RGB mean in [0, 1]
    moment_sum: list[list[float]]  # sum over images of the per-image E[x x^T]


def convert_image(path: str, quality: int) -> tuple[bytes, list[float], list[float]]:
    """One source file's row: its 256x256 JPEG, and its RGB mean and second moment in
    [0, 1] (for the PCA colour statistics). Raises on a file that does not decode."""
    rgb = load_as_rgb_square(Path(path).read_bytes(), SHARD_SIZE)
    x = rgb.reshape(-1, 3).astype(np.float32) / 255.0
    return encode_jpeg(rgb, quality), x.mean(0).tolist(), (x.T @ x / len(x)).ravel().tolist()


def process_batch(batch: dict[str, np.ndarray], quality: int) -> dict[str, list]:
    """Ray Data UDF: read, convert to RGB, resize, crop, re-encode; never raises on bad files."""
    out: dict[str, list] = {k: [] for k in ("image", "error", "rgb_mean", "rgb_moment")}
    for path in batch["path"]:
        try:
            image, mean, moment = convert_image(path, quality)
        except Exception as e:  # noqa: BLE001 - any failure to read is recorded, not raised
            image, mean, moment = b"", [0.0] * 3, [0.0] * 9
            out["error"].append(f"{type(e).__name__}: {e}".replace("\n", " ")[:300])
        else:
            out["error"].append("")
        out["image"].append(image)
        out["rgb_mean"].append(mean)
        out["rgb_moment"].append(moment)
    return {k: batch[k] for k in ("path", "wnid", "label", "index")} | out


def keep_decoded(table: pa.Table) -> pa.Table:
    ok = pa.compute.equal(table["error"], "")
    return table.filter(ok).select(["image", "label", "wnid", "path", "index"])


def chunk_key(
    images: list[SourceImage], split: str, first_index: int, class_index: dict[str, int], quality: int,
) -> str:
    """Everything the chunk's rows depend on, so a kept chunk is the one a rebuild would write.

    The label is a position in classes.json: one new class shifts every label after it,
    while the files stay the same. ``index`` counts from the chunk's first row, so the
    chunk's position (and the chunk size) count too, and so does each file's size and
    modification time, which stand for its content.
    """
    head = {"version": KEY_VERSION, "split": split, "first_index": first_index, "quality": quality,
            "image_size": SHARD_SIZE, "rows_per_shard": ROWS_PER_SHARD}
    h = hashlib.sha1(json.dumps(head, sort_keys=True).encode())
    for im in images:
        h.update(f"{im.path}\t{im.wnid}\t{class_index[im.wnid]}\t{file_stamp(im.path)}\n".encode())
    return h.hexdigest()


def file_stamp(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "unreadable"  # the chunk records it as skipped; a readable file changes the key
    return f"{st.st_size}:{st.st_mtime_ns}"


def record_path(out: Location, split: str, number: str) -> Location:
    """The record of ``<split>/chunk-<number>``; `number` is the folder name's digits."""
    return out / RECORDS / f"{split}-{number}.json"


def read_record(out: Location, split: str, number: str, key: str) -> ChunkResult | None:
    """The chunk's result if it finished under `key` and its shards are all there; None
    for anything else (missing, unfinished, stale, garbage or truncated): it is rebuilt."""
    try:
        record = json.loads(record_path(out, split, number).read_text())
        if record.get("key") != key:
            return None
        result = ChunkResult(**{f.name: record[f.name] for f in dataclasses.fields(ChunkResult)})
        if all((out / s).is_file() for s in result.shards):
            return result
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass
    return None


def remove_chunk_folder(out: Location, split: str, number: str) -> None:
    """Delete a chunk folder, but only one that this preparation's records account for.

    ``check_out`` refuses unrecorded chunk folders before any work; this guard makes sure
    no later change can turn a user's folder into something the job deletes.
    """
    if not record_path(out, split, number).exists():
        raise RuntimeError(f"{out / split}/chunk-{number} has no record in {out / RECORDS}: not deleting it")
    folder = out / split / f"chunk-{number}"
    if folder.is_dir():
        remove_tree(folder)


def check_out(out: Location, src: Path) -> None:
    """Refuse an --out that the job could damage, or that would damage a later run.

    Called before the lock is taken (so nothing is written into a folder that is not
    ours, not even the lock) and again under it.
    """
    o, s = out.resolve(), src.resolve()
    if isinstance(o, Path) and (o == s or s in o.parents):  # a bucket's prefix is never in --src
        raise UserError(
            f"--out {out} is inside --src {src}: a second run would read its train/chunk-* "
            "folders as classes; choose an --out outside --src"
        )
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: pass a directory (new, empty, or one this job prepared)")
    if out.is_dir() and not (out / RECORDS).is_dir():
        other = sorted(p.name for p in out.iterdir() if not p.name.startswith(LOCK_NAME))
        if other:
            raise UserError(
                f"--out {out} holds other files ({len(other)}, first: {other[0]}) and was not "
                f"prepared by this job (no {RECORDS}/ folder): pass a new or empty directory"
            )
    check_no_stray_chunks(out)


def check_no_stray_chunks(out: Location) -> None:
    stray = [d for split in SPLITS for d in sorted((out / split).glob("chunk-*"))
             if not record_path(out, split, d.name.removeprefix("chunk-")).exists()]
    if stray:
        raise UserError(
            f"--out {out}: {stray[0]} ({len(stray)} such) is not a chunk this job recorded in "
            f"{out / RECORDS}/; the job never deletes what it did not write: move it away or "
            "choose another --out"
        )


def run_chunk(
    images: list[SourceImage], first_index: int, class_index: dict[str, int],
    out_dir: Location, rel_dir: str, quality: int,
) -> ChunkResult:
    records = [
        {"path": im.path, "wnid": im.wnid, "label": class_index[im.wnid], "index": first_index + i}
        for i, im in enumerate(images)
    ]
    import ray.data  # here, not at the top: the GPU check prepares data from this module without Ray

    blocks = max(1, min(len(records) // 32, 256))
    ds = ray.data.from_items(records, override_num_blocks=blocks)
    ds = ds.map_batches(process_batch, fn_kwargs={"quality": quality}, batch_size=32).materialize()
    summary = ds.select_columns(["path", "error", "rgb_mean", "rgb_moment"]).to_pandas()
    target = out_dir / rel_dir
    ok = summary["error"] == ""
    if ok.any():
        ds.map_batches(keep_decoded, batch_format="pyarrow").write_parquet(
            str(target), min_rows_per_file=ROWS_PER_SHARD, **PARQUET_ENCODING
        )
    shards = sorted(str(p.relative_to(out_dir)) for p in target.glob("*.parquet"))
    good = summary[ok]
    return ChunkResult(
        shards=shards,
        images=int(ok.sum()),
        skipped=list(zip(summary["path"][~ok], summary["error"][~ok], strict=True)),
        mean_sum=np.sum(np.stack(good["rgb_mean"].to_list() or [np.zeros(3)]), 0).tolist(),
        moment_sum=np.sum(np.stack(good["rgb_moment"].to_list() or [np.zeros(9)]), 0)
        .reshape(3, 3).tolist(),
    )


def prepare(
    src: str | Path, out: str | Location, *, val_labels: str | Path | None = None,
    val_synsets: str | Path | None = None, chunk_size: int = 10_000, quality: int = 90,
    start_ray: Callable[[], object] | None = None,
) -> mf.Manifest:
    """Prepare `src` into `out` (a directory, or a prefix in an object store); returns
    the manifest it wrote.

    The source and `out` are checked, and a local `out` locked, before anything is
    written; `start_ray` runs only then (the job starts Ray there, ~20 s), so a bad flag
    fails at once. An object store has no lock to take (`alexnet.locks`): one preparation
    at a time is the user's to keep.
    """
    src = Path(src)
    out = as_location(out, "--out")
    if isinstance(out, ObjectPath):
        check_reachable(out, "--out")
    classes, splits = find_images(
        src, Path(val_labels) if val_labels else None, Path(val_synsets) if val_synsets else None
    )
    check_out(out, src)
    with exclusive_lock(out, f"--out {out}", "use another --out"):
        check_out(out, src)  # again: another run may have changed it before we held the lock
        if isinstance(out, ObjectPath):  # ours now: a probe object may be written and deleted there
            check_reachable(out, "--out", write=True)
        if start_ray is not None:
            start_ray()
        return write_shards(src, out, classes, splits, chunk_size, quality)


def write_shards(
    src: Path, out: Location, classes: list[str], splits: dict[str, list[SourceImage]], chunk_size: int,
    quality: int,
) -> mf.Manifest:
    class_index = {w: i for i, w in enumerate(classes)}
    (out / RECORDS).mkdir(exist_ok=True)
    total = sum(len(v) for v in splits.values())
    print(f"[prepare] {src}: {len(classes)} classes, "
          + ", ".join(f"{len(v)} {k}" for k, v in splits.items()) + f" images -> {out}", flush=True)
    results: dict[str, list[ChunkResult]] = {}
    done, started = 0, time.time()
    for split, images in splits.items():
        if split == "train":  # rows go to the shards in random order, so a streamed read
            order = np.random.default_rng(SHUFFLE_SEED).permutation(len(images))  # is mixed
            images = [images[i] for i in order]
        results[split] = []
        n_chunks = max(1, -(-len(images) // chunk_size))
        for c in range(n_chunks):
            part = images[c * chunk_size:(c + 1) * chunk_size]
            number = f"{c:05d}"
            key = chunk_key(part, split, c * chunk_size, class_index, quality)
            result = read_record(out, split, number, key)
            if result is not None:
                note = "already done, kept"
            else:
                marker = record_path(out, split, number)
                write_atomic(marker, json.dumps({"key": key, "started": True}))  # the folder is ours
                remove_chunk_folder(out, split, number)  # a chunk cut short last time is rebuilt whole
                result = run_chunk(part, c * chunk_size, class_index, out, f"{split}/chunk-{number}", quality)
                write_atomic(marker, json.dumps({"key": key, **dataclasses.asdict(result)}))
                note = f"{len(result.skipped)} skipped"
            results[split].append(result)
            done += len(part)
            rate = done / max(time.time() - started, 1e-9)
            eta = (total - done) / rate if rate > 0 else 0.0
            print(f"[prepare] {split} chunk {c + 1}/{n_chunks}: {result.images} images, {note}"
                  f" | {done}/{total} files, {rate:.0f} files/s, ETA {eta / 60:.1f} min", flush=True)
        remove_stale_chunks(out, split, n_chunks)
    manifest = assemble_manifest(out, src, classes, results)
    report_skipped(out, results)
    return manifest


def remove_stale_chunks(out: Location, split: str, n_chunks: int) -> None:
    """Chunks beyond the current plan belong to an earlier, larger source: drop them,
    found through their records, so a folder the job did not write is never touched."""
    for record in sorted((out / RECORDS).glob(f"{split}-*.json")):
        number = record.stem.removeprefix(f"{split}-")
        if number.isdigit() and int(number) >= n_chunks:
            remove_chunk_folder(out, split, number)
            record.unlink()


def assemble_manifest(
    out: Location, src: Path, classes: list[str], results: dict[str, list[ChunkResult]]
) -> mf.Manifest:
    train = results["train"]
    n = sum(r.images for r in train)
    if n >= MIN_IMAGES_FOR_OWN_PCA:
        mean01 = np.sum([r.mean_sum for r in train], 0) / n
        moment = np.sum([r.moment_sum for r in train], 0) / n
        eigval, eigvec = mf.pca_from_moments(mean01, moment)
        rgb_mean, pca_source = (mean01 * 255).tolist(), "train"
    else:
        rgb_mean, eigval, eigvec = mf.IMAGENET_MEAN, mf.IMAGENET_EIGVAL, mf.IMAGENET_EIGVEC
        pca_source = "imagenet-constants"
    manifest = mf.Manifest(
        num_classes=len(classes),
        image_size=SHARD_SIZE,
        splits={
            split: mf.SplitInfo(
                images=sum(r.images for r in rs),
                skipped=sum(len(r.skipped) for r in rs),
                shards=[s for r in rs for s in r.shards],
            )
            for split, rs in results.items()
        },
        rgb_mean=rgb_mean, pca_eigval=eigval, pca_eigvec=eigvec, pca_source=pca_source,
        source=str(src.resolve()),
    )
    write_atomic(out / mf.CLASSES, json.dumps(classes, indent=1))
    write_atomic(out / mf.MANIFEST, manifest.to_json())
    return manifest


def report_skipped(out: Location, results: dict[str, list[ChunkResult]]) -> None:
    rows = [(split, p, why) for split, rs in results.items() for r in rs for p, why in r.skipped]
    text = io.StringIO(newline="")
    w = csv.writer(text)
    w.writerow(["split", "path", "reason"])
    w.writerows(rows)
    write_atomic(out / mf.SKIPPED, text.getvalue())
    msg = "[prepare] done: " + ", ".join(
        f"{sum(r.images for r in rs)} {split}" for split, rs in results.items()
    )
    if rows:
        msg += f"; skipped {len(rows)} unreadable files, listed with reasons in {out / mf.SKIPPED}"
    print(msg, flush=True)
