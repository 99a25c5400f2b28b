"""Every published value kept in lightfer_utils.published appears in its table in the paper text."""

from __future__ import annotations

import re

import pytest

from lightfer_utils import published
from lightfer_utils.runtime.provenance import PROJECT_ROOT

PAPERS = [PROJECT_ROOT.parent / "shared" / "papers", PROJECT_ROOT / "shared" / "papers"]


def paper(name: str) -> str:
    for folder in PAPERS:
        if (folder / name).exists():
            return (folder / name).read_text()
    pytest.skip(f"the paper text {name} is not beside this checkout (../shared/papers)")


def table_rows(text: str, title: str) -> list[list[str]]:
    """Tab-separated rows following every occurrence of `title` (the paper splits Table 4)."""
    rows = []
    for match in re.finditer(re.escape(title), text):
        for line in text[match.end():].splitlines()[1:40]:
            if "\t" in line:
                rows.append(line.split("\t"))
            elif rows and line.strip() and not line.startswith("Framework"):
                break
    return rows


def number(cell: str) -> float | None:
    return None if cell.strip() == "-" else float(cell)


def test_light_fer_tables_match_the_paper():
    text = paper("light-fer_pascual2022.md")
    rows = table_rows(text, "Table 1. Actual test results")
    assert [[float(v) for v in r[1:]] for r in rows[1:8]] == published.TABLE_1
    rows = {r[0]: (number(r[1]), number(r[2])) for r in table_rows(text, "Table 2. Comparison")[1:]}
    assert {m: (tr, te) for m, tr, te in published.TABLE_2} == {m: rows[m] for m, _, _ in published.TABLE_2}
    rows = {r[0]: tuple(float(v) for v in r[1:]) for r in table_rows(text, "Table 3. Hardware")[1:]}
    assert {m: tuple(v) for m, *v in published.TABLE_3} == {m: rows[m] for m, *_ in published.TABLE_3}
    rows = {(r[0], r[1]): tuple(float(v) for v in r[2:]) for r in table_rows(text, "Table 4.") if r[0] != "Framework"}
    assert {(f, p): tuple(v) for f, p, *v in published.TABLE_4} == rows


def test_zhou_model_numbers_match_the_paper():
    text = paper("lightweight-cnn_zhou2020.md")
    assert "total of 58423 parameters, of which there are 56951 trainable" in text
    assert "accuracy of sentiment classification achieves 67%" in text
    assert published.ZHOU_MODEL == {"parameters": 58423, "trainable_parameters": 56951, "test_accuracy_percent": 67}
