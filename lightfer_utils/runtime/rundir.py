"""The layout of a run directory (`lightfer run`), named once: the notebooks write into it, the
report, shipping, the runner and the tests read from it, all through these names.

No syntax newer than Python 3.6: 06 imports it on the Jetson.
"""

from pathlib import Path
from typing import Union


class RunDir:
    """The paths of one run directory; nothing is created until a caller writes."""

    def __init__(self, root: Union[str, Path]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return "RunDir({!r})".format(str(self.root))

    # what the runner and 07 write
    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def reproduction_report(self) -> Path:
        return self.root / "REPRODUCTION.md"

    def notebook(self, name: str) -> Path:
        return self.root / (name + ".ipynb")

    # every notebook: tables (CSV, and 07's Markdown/LaTeX) and figures (PNG + PDF)
    @property
    def tables(self) -> Path:
        return self.root / "tables"

    def table(self, name: str) -> Path:
        return self.tables / (name + ".csv")

    # tables that one step writes and another reads (07's report, shipping, the runner), named once;
    # tests/test_layout.py checks that the notebooks write each of them under this name
    CLASS_COUNTS = "class_counts"  # 01
    MODEL_RESULTS = "model_results"  # 02: Table 2's rows
    TRAINING_COST = "training_cost"  # 02: the models too slow to train here, per epoch
    PAPER_MODEL_RESULTS = "paper_model_results"  # 02: the shipped paper model's Table 2 row
    PRUNING = "pruning"  # 03: every compressed variant
    QUANTIZATION_FORMATS = "quantization_formats"  # 04: Eq. 2-4's formats
    ANCHOR_ACCURACY = "anchor_accuracy"  # 05: the fer package's model on PrivateTest
    BENCHMARK = "benchmark"  # 06: every format, classifier alone
    PIPELINE_BENCHMARK = "pipeline_benchmark"  # 06: end to end
    PAPER_MODEL_BENCHMARK = "paper_model_benchmark"  # 06: the paper model's formats, classifier alone
    PAPER_MODEL_PIPELINE = "paper_model_pipeline_benchmark"  # 06: its formats, end to end
    CONFUSION_PREFIX = "confusion_"  # 02: confusion_MODEL, one per model

    @classmethod
    def read_tables(cls) -> tuple:
        return (cls.CLASS_COUNTS, cls.MODEL_RESULTS, cls.TRAINING_COST, cls.PAPER_MODEL_RESULTS, cls.PRUNING,
                cls.QUANTIZATION_FORMATS, cls.ANCHOR_ACCURACY, cls.BENCHMARK, cls.PIPELINE_BENCHMARK,
                cls.PAPER_MODEL_BENCHMARK, cls.PAPER_MODEL_PIPELINE)

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    # 02: one training directory per model
    @property
    def training(self) -> Path:
        return self.root / "training"

    def training_dir(self, model: str) -> Path:
        return self.training / model

    # 03: pruned variants and the structured variant chosen for 04
    @property
    def pruned(self) -> Path:
        return self.root / "pruned"

    @property
    def pruning_choice(self) -> Path:
        return self.pruned / "chosen.json"

    # 04: the model in every format, and the chosen structured variant in every format
    @property
    def quantized(self) -> Path:
        return self.root / "quantized"

    @property
    def quantized_structured(self) -> Path:
        return self.root / "quantized_structured"

    # 05: engines, the fer anchor's files, the inputs 06 times
    @property
    def tensorrt(self) -> Path:
        return self.root / "tensorrt"

    @property
    def ort_trt_cache(self) -> Path:
        return self.root / "ort_trt_cache"

    @property
    def anchor(self) -> Path:
        return self.root / "anchor"

    @property
    def benchmark_inputs(self) -> Path:
        return self.root / "benchmark_inputs"

    @property
    def benchmark_faces(self) -> Path:
        return self.benchmark_inputs / "faces.npy"

    @property
    def benchmark_frames(self) -> Path:
        return self.benchmark_inputs / "frames.npy"

    # 06: the host the benchmark ran on
    @property
    def benchmark_host(self) -> Path:
        return self.tables / "benchmark_host.json"
