"""conftest.py for the nbval replay directory (copied there by tests/test_notebooks.py).

stderr carries TensorFlow's C++ log lines and Python warnings; whether the kernel captures the
C++ ones at all depends on timing, so stderr is diagnostics, not a result, and is not compared
(the approach nbval's maintainers recommend, computationalmodelling/nbval#88).

A pandas table comes as text/html and text/plain. The plain form wraps its columns at 80
characters, and where it wraps depends on the width of the numbers in it, which differs by CPU
kind; the HTML form holds the same cells without wrapping. Where an output has both, only the
HTML is compared (nbval 0.11 compares every MIME type but images; this narrows its input).
"""

import nbformat
from nbval.plugin import IPyNbCell

_compare_outputs = IPyNbCell.compare_outputs


def _html_instead_of_plain(outputs):
    narrowed = []
    for output in outputs:
        data = output.get("data")
        if data and "text/html" in data and "text/plain" in data:
            output = nbformat.from_dict({**output, "data": {k: v for k, v in data.items() if k != "text/plain"}})
        narrowed.append(output)
    return narrowed


def compare_outputs(self, test, ref, skip_compare=None):
    return _compare_outputs(self, _html_instead_of_plain(test), _html_instead_of_plain(ref), skip_compare)


IPyNbCell.compare_outputs = compare_outputs


def pytest_collectstart(collector):
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr",)
