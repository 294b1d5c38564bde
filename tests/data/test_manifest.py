import json
from pathlib import Path

import pytest

from alexnet.data import manifest as mf
from alexnet.errors import UserError


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"--data .*not found.*prepare_data\.py"):
        mf.load(tmp_path / "nowhere")


def test_unprepared_directory(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"no manifest\.json.*prepare_data\.py"):
        mf.load(tmp_path)


def test_manifest_naming_missing_shards(data_copy: Path) -> None:
    shard = next((data_copy / "val").rglob("*.parquet"))
    shard.unlink()
    with pytest.raises(UserError, match=r"names 1 shard files that do not exist"):
        mf.load(data_copy)


def test_class_list_disagreeing_with_manifest(data_copy: Path) -> None:
    (data_copy / mf.CLASSES).write_text(json.dumps(["a", "b"]))
    with pytest.raises(UserError, match=r"lists 2 classes but manifest\.json says 3"):
        mf.load(data_copy)
