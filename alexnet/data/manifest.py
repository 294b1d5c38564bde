"""What a prepared data directory holds, and the checks that it is whole.

Layout of a prepared directory::

    manifest.json      per-split counts, shard files, RGB mean and PCA statistics
    classes.json       the wnids, index = label
    class_names.json   optional: each wnid's human-readable name (ImageNet's synset words)
    skipped.csv        images that could not be decoded, with the reason
    train/*.parquet    one row per image: image (JPEG bytes), label, wnid, path, index
    val/*.parquet
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from alexnet.errors import UserError
from alexnet.store import Location, ObjectPath, check_reachable, open_location, parquet_file

MANIFEST, CLASSES, SKIPPED = "manifest.json", "classes.json", "skipped.csv"
CLASS_NAMES = "class_names.json"  # {wnid: human-readable name}, where the preparation was given them
PREPARE_HINT = "run `python jobs/prepare_data.py --src <imagenet dir> --out <dir>` (or `make data`)"

# Widely used ImageNet PCA constants (RGB in [0, 1]); the fallback when a training set
# is too small or too uniform for its own covariance to be meaningful.
IMAGENET_EIGVAL = [0.2175, 0.0188, 0.0045]
IMAGENET_EIGVEC = [  # columns are eigenvectors
    [-0.5675, 0.7192, 0.4009],
    [-0.5808, -0.0045, -0.8140],
    [-0.5836, -0.6948, 0.4203],
]
IMAGENET_MEAN = [127.3, 119.7, 104.9]


@dataclass
class SplitInfo:
    images: int = 0
    skipped: int = 0
    shards: list[str] = field(default_factory=list)


@dataclass
class Manifest:
    num_classes: int
    image_size: int
    splits: dict[str, SplitInfo]
    rgb_mean: list[float]  # 0-255
    pca_eigval: list[float]  # RGB in [0, 1]
    pca_eigvec: list[list[float]]  # columns are eigenvectors
    pca_source: str  # "train" or "imagenet-constants"
    source: str = ""

    def shard_paths(self, root: str | Path, split: str) -> list[str]:
        return [os.path.join(str(root), s) for s in self.splits[split].shards]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> Manifest:
        d = dict(d)
        d["splits"] = {k: SplitInfo(**v) for k, v in d["splits"].items()}
        return cls(**d)


def pca_from_moments(mean01: np.ndarray, second_moment: np.ndarray) -> tuple[list, list]:
    """Eigen-decomposition of the RGB covariance E[xx^T] - mu mu^T, largest first."""
    cov = second_moment - np.outer(mean01, mean01)
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1]
    return np.clip(eigval[order], 0.0, None).tolist(), eigvec[:, order].tolist()


def load(data_dir: str | Location, splits: tuple[str, ...] = ("train", "val"),
         flag: str = "--data") -> tuple[Manifest, list[str]]:
    """Read and check a prepared directory (local, or a prefix in an object store);
    every failure names the flag, the path and the fix."""
    root = open_location(data_dir, flag)
    if isinstance(root, ObjectPath):
        check_reachable(root, flag)
    if not root.is_dir():
        raise UserError(f"{flag} {root}: directory not found; {PREPARE_HINT}")
    if not (root / MANIFEST).is_file():
        raise UserError(f"{flag} {root}: no {MANIFEST}, so it is not prepared; {PREPARE_HINT}")
    try:
        manifest = Manifest.from_dict(json.loads((root / MANIFEST).read_text()))
        classes = json.loads((root / CLASSES).read_text())
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise UserError(f"{flag} {root}: unreadable {MANIFEST} or {CLASSES} ({e}); {PREPARE_HINT}") from e
    if len(classes) != manifest.num_classes:
        raise UserError(
            f"{root / CLASSES} lists {len(classes)} classes but {MANIFEST} says "
            f"{manifest.num_classes}; re-run prepare_data.py into an empty --out"
        )
    for split in splits:
        info = manifest.splits.get(split)
        if info is None or info.images == 0:
            raise UserError(f"{flag} {root}: the {split} split is empty or missing; {PREPARE_HINT}")
        present = files_under(root, split)
        missing = [s for s in info.shards if s not in present and not (root / s).is_file()]
        if missing:
            raise UserError(
                f"{root / MANIFEST} names {len(missing)} shard files that do not exist "
                f"(first: {missing[0]}); re-run prepare_data.py on the same --out to rebuild them"
            )
        check_shards([root / s for s in info.shards])
    return manifest, classes


def files_under(root: Location, folder: str) -> set[str]:
    """The files under `root`/`folder`, as paths relative to `root`: one listing, not a
    request per shard (ImageNet has ~1,300 of them, and a store answers each in tens of ms)."""
    if isinstance(root, ObjectPath):
        infos = root.fs.get_file_info(pafs.FileSelector((root / folder).key, recursive=True, allow_not_found=True))
        return {i.path.removeprefix(root.key + "/") for i in infos if i.type == pafs.FileType.File}
    return {p.relative_to(root).as_posix() for p in (root / folder).rglob("*") if p.is_file()}


def read_synset_words(path: str | Path) -> dict[str, str]:
    """{wnid: name} from a synset list: ImageNet's `LOC_synset_mapping.txt` or the devkit's
    `synset_words.txt` / `words.txt` ("n01440764 tench, Tinca tinca", space or tab), or the
    devkit's `meta.mat` (its synsets' WNID and words)."""
    path = Path(path)
    try:
        if path.suffix == ".mat":
            from scipy.io import loadmat

            synsets = loadmat(str(path), squeeze_me=True)["synsets"]
            return {str(s["WNID"]): str(s["words"]) for s in synsets}
        pairs = (line.strip().split(None, 1) for line in path.read_text().splitlines() if line.strip())
        return {p[0]: p[1].strip() if len(p) > 1 else p[0] for p in pairs}
    except (OSError, KeyError, ValueError, UnicodeDecodeError) as e:
        raise UserError(f"--synset-words {path}: cannot read it ({e}); pass LOC_synset_mapping.txt, the "
                        "devkit's synset_words.txt or its meta.mat") from e


def class_names(data_dir: str | Location, classes: list[str]) -> list[str]:
    """Each class's human-readable name in label order, from `class_names.json` when the
    preparation wrote one, else its wnid."""
    path = open_location(data_dir) / CLASS_NAMES
    names = json.loads(path.read_text()) if path.is_file() else {}
    return [names.get(wnid, wnid) for wnid in classes]


def shard_problem(path: Location) -> str | None:
    """Why `path` is not a whole Parquet file (None when it is). Reading the footer is
    cheap and catches a truncated or overwritten shard, which would otherwise pass every
    check and fail inside an augmentation actor, after Ray Train's retries."""
    try:
        with parquet_file(str(path)) as f:
            f.metadata  # noqa: B018 - reading it is the check
    except (OSError, pa.ArrowException) as e:
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    return None


def check_shards(paths: list[Location]) -> None:
    """Open every shard's footer (in threads: on NFS each one is a round trip) and name
    the first bad one."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        problems = list(pool.map(shard_problem, paths))
    bad = [(p, why) for p, why in zip(paths, problems, strict=True) if why is not None]
    if bad:
        path, why = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise UserError(f"{path}: shard is truncated or corrupt ({why}){more}; delete it and re-run "
                        "prepare_data.py on the same --out to rebuild it")
