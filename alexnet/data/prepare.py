"""Convert an ImageNet-style tree into Parquet shards of 256x256 JPEGs, as a Ray Data job.

The work is cut into chunks of files. Each chunk is decoded in parallel Ray tasks,
written to ``<out>/<split>/chunk-NNNNN/`` and then recorded in ``<out>/.chunks/``.
A rerun on the same ``--out`` skips the chunks already recorded for the same files, so
an interrupted preparation resumes where it stopped; a chunk whose files changed, or
that was cut short, is rebuilt.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import ray

from alexnet.data import manifest as mf
from alexnet.data.images import SHARD_SIZE, encode_jpeg, load_as_rgb_square
from alexnet.data.layout import SourceImage, find_images

MIN_IMAGES_FOR_OWN_PCA = 10
SHUFFLE_SEED = 0
# JPEG bytes neither compress nor repeat: stored plain, the training actors read a shard
# in half the time (5.5 against 11 us per digit image, 16 against 25 on photo-like JPEGs).
PARQUET_ENCODING = {"compression": "none", "use_dictionary": ["wnid"]}


@dataclass
class ChunkResult:
    shards: list[str]
    images: int
    skipped: list[tuple[str, str]]  # (path, reason)
    mean_sum: list[float]  # sum over images of the per-image RGB mean in [0, 1]
    moment_sum: list[list[float]]  # sum over images of the per-image E[x x^T]


def process_batch(batch: dict[str, np.ndarray], quality: int) -> dict[str, list]:
    """Ray Data UDF: read, convert to RGB, resize, crop, re-encode; never raises on bad files."""
    out: dict[str, list] = {k: [] for k in ("image", "error", "rgb_mean", "rgb_moment")}
    for path in batch["path"]:
        try:
            rgb = load_as_rgb_square(Path(path).read_bytes(), SHARD_SIZE)
        except Exception as e:  # noqa: BLE001 - any failure to read is recorded, not raised
            out["image"].append(b"")
            out["error"].append(f"{type(e).__name__}: {e}".replace("\n", " ")[:300])
            out["rgb_mean"].append([0.0] * 3)
            out["rgb_moment"].append([0.0] * 9)
            continue
        x = rgb.reshape(-1, 3).astype(np.float32) / 255.0
        out["image"].append(encode_jpeg(rgb, quality))
        out["error"].append("")
        out["rgb_mean"].append(x.mean(0).tolist())
        out["rgb_moment"].append((x.T @ x / len(x)).ravel().tolist())
    return {k: batch[k] for k in ("path", "wnid", "label", "index")} | out


def keep_decoded(table: pa.Table) -> pa.Table:
    ok = pa.compute.equal(table["error"], "")
    return table.filter(ok).select(["image", "label", "wnid", "path", "index"])


def chunk_key(images: list[SourceImage], quality: int) -> str:
    h = hashlib.sha1(f"q={quality}".encode())
    for im in images:
        h.update(f"{im.path}\t{im.wnid}\n".encode())
    return h.hexdigest()


def run_chunk(
    images: list[SourceImage], first_index: int, class_index: dict[str, int],
    out_dir: Path, rel_dir: str, quality: int,
) -> ChunkResult:
    records = [
        {"path": im.path, "wnid": im.wnid, "label": class_index[im.wnid], "index": first_index + i}
        for i, im in enumerate(images)
    ]
    blocks = max(1, min(len(records) // 32, 256))
    ds = ray.data.from_items(records, override_num_blocks=blocks)
    ds = ds.map_batches(process_batch, fn_kwargs={"quality": quality}, batch_size=32).materialize()
    summary = ds.select_columns(["path", "error", "rgb_mean", "rgb_moment"]).to_pandas()
    target = out_dir / rel_dir
    shutil.rmtree(target, ignore_errors=True)  # a chunk cut short last time is rebuilt whole
    ok = summary["error"] == ""
    if ok.any():
        ds.map_batches(keep_decoded, batch_format="pyarrow").write_parquet(
            str(target), min_rows_per_file=1000, **PARQUET_ENCODING
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
    src: str | Path, out: str | Path, *, val_labels: str | Path | None = None,
    val_synsets: str | Path | None = None, chunk_size: int = 10_000, quality: int = 90,
) -> mf.Manifest:
    """Prepare `src` into `out`; returns the manifest it wrote."""
    src, out = Path(src), Path(out)
    classes, splits = find_images(
        src, Path(val_labels) if val_labels else None, Path(val_synsets) if val_synsets else None
    )
    class_index = {w: i for i, w in enumerate(classes)}
    out.mkdir(parents=True, exist_ok=True)
    (out / ".chunks").mkdir(exist_ok=True)
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
            rel_dir = f"{split}/chunk-{c:05d}"
            marker = out / ".chunks" / f"{split}-{c:05d}.json"
            key = chunk_key(part, quality)
            cached = json.loads(marker.read_text()) if marker.is_file() else None
            if cached and cached.get("key") == key and all((out / s).is_file() for s in cached["shards"]):
                result = ChunkResult(**{k: v for k, v in cached.items() if k != "key"})
                note = "already done, kept"
            else:
                result = run_chunk(part, c * chunk_size, class_index, out, rel_dir, quality)
                mf.write_json_atomic(marker, json.dumps({"key": key, **result.__dict__}))
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


def remove_stale_chunks(out: Path, split: str, n_chunks: int) -> None:
    """Chunks beyond the current plan belong to an earlier, larger source: drop them."""
    for d in (out / split).glob("chunk-*"):
        if int(d.name.split("-")[1]) >= n_chunks:
            shutil.rmtree(d)
            (out / ".chunks" / f"{split}-{d.name.split('-')[1]}.json").unlink(missing_ok=True)


def assemble_manifest(
    out: Path, src: Path, classes: list[str], results: dict[str, list[ChunkResult]]
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
    mf.write_json_atomic(out / mf.CLASSES, json.dumps(classes, indent=1))
    mf.write_json_atomic(out / mf.MANIFEST, manifest.to_json())
    return manifest


def report_skipped(out: Path, results: dict[str, list[ChunkResult]]) -> None:
    rows = [(split, p, why) for split, rs in results.items() for r in rs for p, why in r.skipped]
    with (out / mf.SKIPPED).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["split", "path", "reason"])
        w.writerows(rows)
    msg = "[prepare] done: " + ", ".join(
        f"{sum(r.images for r in rs)} {split}" for split, rs in results.items()
    )
    if rows:
        msg += f"; skipped {len(rows)} unreadable files, listed with reasons in {out / mf.SKIPPED}"
    print(msg, flush=True)
