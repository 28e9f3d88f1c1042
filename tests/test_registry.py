"""The registry: what `ephys add` and the poller write, and what Snakemake reads."""

from __future__ import annotations

import os

import pytest

from pipeline.errors import RowError
from pipeline.io.registry import Recording, Registry, check_name, resolve_raw_path


def test_hostile_notes_survive_a_round_trip(tmp_path):
    reg = Registry(tmp_path)
    note = '"quoted" start,\ttab and\nnewline'
    reg.add(Recording("r1", "m1", "/data/r1", notes=note))
    reg.add(Recording("r2", "m1", "/data/r2"))
    got = reg.read()
    assert list(got) == ["r1", "r2"]
    assert got["r1"].notes == note and got["r1"].registered_at


def test_an_id_registered_for_other_data_is_refused_unless_replaced(tmp_path):
    reg = Registry(tmp_path)
    reg.add(Recording("r1", "m1", "/data/a"))
    with pytest.raises(RowError, match="already used for another recording"):
        reg.add(Recording("r1", "m1", "/data/b"))
    assert reg.read()["r1"].raw_path == "/data/a"
    reg.add(Recording("r1", "m1", "/data/b"), replace=True)
    assert reg.read()["r1"].raw_path == "/data/b"


@pytest.mark.parametrize("value", ["", " ", "a/b", "..", ".", "a b", "x" * 101, "-lead", "rm -rf;", "é"])
def test_names_that_cannot_be_folders_are_refused(value):
    with pytest.raises(RowError):
        check_name(value, "recording id")


def test_raw_paths_are_confined_to_the_data_roots(tmp_path):
    root = tmp_path / "root"
    (root / "rec").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link-out").symlink_to(outside)
    (root / "link-in").symlink_to(root / "rec")
    roots = [str(root)]
    assert resolve_raw_path("rec", roots) == root / "rec"
    assert resolve_raw_path(str(root / "rec"), roots) == root / "rec"
    assert resolve_raw_path("link-in", roots) == root / "rec"
    for bad in ("link-out", "../outside", str(outside), "rec/../../outside", "/"):
        with pytest.raises(RowError, match="outside the folders"):
            resolve_raw_path(bad, roots)
    with pytest.raises(RowError, match="invalid character"):
        resolve_raw_path("rec\x00", roots)
    # A maintainer at a shell: relative to the current directory first.
    cwd = os.getcwd()
    try:
        os.chdir(root)
        assert resolve_raw_path("rec", roots, cwd=root) == root / "rec"
    finally:
        os.chdir(cwd)


def test_a_relative_raw_path_is_looked_for_in_every_data_root(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    (second / "rec").mkdir(parents=True)
    assert resolve_raw_path("rec", [str(first), str(second)]) == second / "rec"
    with pytest.raises(RowError, match="does not exist"):
        resolve_raw_path("nowhere", [str(first), str(second)])


def test_a_raw_path_the_file_system_refuses_is_that_row_s_problem_in_words(tmp_path):
    with pytest.raises(RowError) as err:
        resolve_raw_path("x" * 300, [str(tmp_path)])
    message = str(err.value)
    assert "cannot be used (File name too long)" in message
    assert len(message) < 200, "a long cell is quoted by a short prefix only"
