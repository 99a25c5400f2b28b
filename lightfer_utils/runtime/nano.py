"""The Jetson Nano step of a run, as the paper measured Table 4: TensorRT engines (FP32, FP16) built
on the Nano from the run's opset-13 ONNX with TensorRT's Python API, then 06 executed there with
papermill. On a host without TensorRT or a CUDA device it says so in one line and does nothing.

    python3 -m lightfer_utils.runtime.nano RUN_DIR [--precisions fp32,fp16] [--notebook PATH] [--no-benchmark]

No syntax newer than Python 3.6 (JetPack 4.6) and no TensorFlow.
"""

import argparse
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

from lightfer_utils.runtime.provenance import PROJECT_ROOT
from lightfer_utils.runtime.rundir import RunDir
from lightfer_utils.runtime.tensorrt_runtime import PRECISIONS, build_engine, tensorrt_8_2_problems, tensorrt_unavailable

ONNX_FILE = "model.onnx"  # 04's FP32 ONNX in quantized/: the engines' source
DEFAULT_NOTEBOOK = PROJECT_ROOT / "notebooks" / "06_jetson_benchmark.ipynb"


def engine_path(run: RunDir, precision: str) -> Path:
    return run.tensorrt / "model_{}.engine".format(precision)


def build_engines(run: RunDir, precisions: List[str]) -> List[Path]:
    """FP32/FP16 engines from the run's ONNX; an engine already there is kept (engines belong to
    the GPU and TensorRT version they were built with, so build them on the device that runs them)."""
    source = run.quantized / ONNX_FILE
    if not source.is_file():
        raise FileNotFoundError("{} is missing: copy the run directory after 04 wrote it".format(source))
    problems = tensorrt_8_2_problems(source)
    if problems:
        raise ValueError("{}: {} (re-export it with this package's ONNX_OPSET)".format(source, "; ".join(problems)))
    run.tensorrt.mkdir(exist_ok=True)
    built = []
    for precision in precisions:
        target = engine_path(run, precision)
        if not target.exists():
            print("building {} from {} ...".format(target, source), flush=True)
            build_engine(source, target, precision)
        built.append(target)
    return built


def run_benchmark(run: RunDir, notebook: Path) -> Path:
    """06 on this device (no Keras: no TensorFlow here), into the run directory."""
    output = run.notebook("06_jetson_benchmark")
    command = [sys.executable, "-m", "papermill", str(notebook), str(output), "-p", "run_dir", str(run.root),
               "-p", "include_keras", "False"]
    subprocess.run(command, check=True)
    return output


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m lightfer_utils.runtime.nano", description=__doc__.split("\n\n")[0],
                                     epilog="example: python3 -m lightfer_utils.runtime.nano papermill_runs/paper-20261204")
    parser.add_argument("run_dir", help="a run directory after 04 (quantized/ and benchmark_inputs/ copied to the Nano)")
    parser.add_argument("--precisions", default="fp32,fp16", help="engines to build (default: fp32,fp16, the paper's)")
    parser.add_argument("--notebook", default=str(DEFAULT_NOTEBOOK), help="06_jetson_benchmark.ipynb (default: %(default)s)")
    parser.add_argument("--no-benchmark", action="store_true", help="only build the engines")
    args = parser.parse_args(argv)
    precisions = [p for p in args.precisions.split(",") if p]
    unknown = [p for p in precisions if p not in PRECISIONS]
    if not precisions or unknown:
        print("nano: error: --precisions takes {} (comma-separated), got {!r}".format(", ".join(PRECISIONS), args.precisions),
              file=sys.stderr)
        return 2
    run = RunDir(args.run_dir)
    if not run.root.is_dir():
        print("nano: error: {} is not a directory".format(run.root), file=sys.stderr)
        return 2
    reason = tensorrt_unavailable()
    if reason:
        print("nano: skipped: no TensorRT engines can be built here: {}".format(reason))
        return 0
    try:
        for path in build_engines(run, precisions):
            print("engine: {}".format(path))
        if not args.no_benchmark:
            print("executed: {}".format(run_benchmark(run, Path(args.notebook))))
    except (FileNotFoundError, ValueError) as err:
        print("nano: error: {}".format(err), file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as err:
        print("nano: error: 06 failed on this device (exit {}); see {}".format(err.returncode, run.notebook("06_jetson_benchmark")),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
