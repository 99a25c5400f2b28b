"""conftest.py for the nbval replay directory (copied there by tests/test_notebooks.py).

stderr carries TensorFlow's C++ log lines and Python warnings; whether the kernel captures the
C++ ones at all depends on timing, so stderr is diagnostics, not a result, and is not compared
(the approach nbval's maintainers recommend, computationalmodelling/nbval#88)."""


def pytest_collectstart(collector):
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr",)
