"""Labels files of a flat validation folder: a bad line is named, never silently mislabelled."""

from pathlib import Path

import pytest

from alexnet.data.layout import flat_val_labels
from alexnet.errors import UserError


@pytest.fixture
def flat_val(tmp_path: Path) -> Path:
    val = tmp_path / "val"
    val.mkdir()
    for i in range(1, 4):
        (val / f"ILSVRC2012_val_{i:08d}.JPEG").write_bytes(b"")
    (tmp_path / "synsets.txt").write_text("n01\nn02\nn03\n")
    return val


def test_devkit_ids_map_to_synsets_in_devkit_order(flat_val: Path, tmp_path: Path) -> None:
    (tmp_path / "truth.txt").write_text("3\n1\n2\n")
    labels = flat_val_labels(flat_val, tmp_path / "truth.txt", tmp_path / "synsets.txt")
    assert list(labels.values()) == ["n03", "n01", "n02"]


@pytest.mark.parametrize("bad", ["0", "4", "x7", "-1", "2.0"])
def test_a_devkit_id_outside_the_synset_list_names_file_and_line(flat_val: Path, tmp_path: Path, bad: str) -> None:
    truth = tmp_path / "truth.txt"
    truth.write_text(f"1\n{bad}\n2\n")
    with pytest.raises(UserError) as e:
        flat_val_labels(flat_val, truth, tmp_path / "synsets.txt")
    assert f"--val-labels {truth} line 2: '{bad}' is not an ILSVRC2012_ID within 1..3" in str(e.value)


def test_a_csv_row_without_a_prediction_names_file_and_line(flat_val: Path, tmp_path: Path) -> None:
    labels = tmp_path / "LOC_val_solution.csv"
    labels.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n01 1 2 3 4\n"
                      "ILSVRC2012_val_00000002,\n")
    with pytest.raises(UserError, match=rf"--val-labels {labels} line 3: ImageId 'ILSVRC2012_val_00000002'"):
        flat_val_labels(flat_val, labels, None)
