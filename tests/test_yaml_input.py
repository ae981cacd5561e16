"""Hostile YAML (alias bombs, cycles, deep nesting, binary files) is refused in one short line."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ScheduleError, SweepError
from pipeline.pruning import load_schedule
from pipeline.search.config import load_sweep
from pipeline.yaml_input import MAX_DEPTH, YAMLLimitError, safe_load

REPO = Path(__file__).resolve().parent.parent


def billion_laughs(key: str) -> str:
    """The classic 9-level bomb: under 1 KB, 9^9 (387 million) strings once expanded."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + f"\n{key}: *a8\n"


def test_the_bomb_is_under_1_kb():
    assert len(billion_laughs("version")) < 1024


@pytest.mark.parametrize("load, error, key", [(load_schedule, ScheduleError, "version"),
                                              (load_sweep, SweepError, "method")])
def test_alias_bomb_is_refused_before_it_is_built(tmp_path, load, error, key):
    path = tmp_path / "bomb.yaml"
    path.write_text(billion_laughs(key))
    with pytest.raises(error) as info:
        load(path)
    message = str(info.value)
    assert "aliases expand to more than 100,000 values" in message
    assert "\n" not in message and len(message) < 300


@pytest.mark.parametrize("text, problem", [
    ("a: &a [1, *a]\n", "refers to a node that contains it"),
    ("[" * 5000 + "]" * 5000 + "\n", f"nesting deeper than {MAX_DEPTH} levels"),
    ("a: " + "{b: " * 200 + "1" + "}" * 200 + "\n", f"nesting deeper than {MAX_DEPTH} levels"),
], ids=["cycle", "deep-lists", "deep-mappings"])
def test_cycles_and_deep_nesting_are_refused(text, problem):
    with pytest.raises(YAMLLimitError, match=problem):
        safe_load(text)


def test_shared_aliases_within_the_bound_still_load():
    data = safe_load("base: &b {epochs: [0, 2, 4]}\np1: *b\np2: {<<: *b, frequency: 2}\n")
    assert data["p1"] == {"epochs": [0, 2, 4]} and data["p2"]["frequency"] == 2
    assert safe_load("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None


@pytest.mark.parametrize("load, error", [(load_schedule, ScheduleError), (load_sweep, SweepError)])
def test_binary_file_is_one_line_error(tmp_path, load, error):
    path = tmp_path / "binary.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(error, match="not a UTF-8 text file"):
        load(path)
    path.write_bytes(b"version: 1\x00\x01\n")  # valid UTF-8, characters YAML forbids
    with pytest.raises(error, match="YAML syntax error"):
        load(path)


def test_echoed_values_are_capped(tmp_path):
    path = tmp_path / "long.yaml"
    path.write_text("version: " + "x" * 5_000 + "\npruners: {}\npolicies: []\n")
    with pytest.raises(ScheduleError) as info:
        load_schedule(path)
    assert len(str(info.value)) < 1100 and "characters left out" in str(info.value)
