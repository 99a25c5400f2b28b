"""Provenance of a run: git revision, package versions and the host it ran on.

Kept free of TensorFlow and of syntax newer than Python 3.6, because the Jetson benchmark
imports it on JetPack 4.6's Python 3.6.
"""

import datetime
import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterable, Optional

# the repository (an editable install); run directories, notebooks and git live here
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def project_relative(path: "os.PathLike[str] | str") -> str:
    """A path as records keep it: relative to the project root (with ``..`` when outside it), so
    provenance holds no host's absolute paths."""
    return os.path.relpath(str(Path(path).resolve()), str(PROJECT_ROOT))


def cache_dir() -> Path:
    """The machine's cache for lightfer (decoded data, live training, fetched files):
    $LIGHTFER_CACHE, default ~/.cache/lightfer."""
    return Path(os.environ.get("LIGHTFER_CACHE") or Path.home() / ".cache" / "lightfer")

TRACKED_PACKAGES = (
    "lightfer", "tensorflow", "tf-keras", "tensorflow-model-optimization", "tf2onnx", "onnx",
    "onnxruntime", "onnxruntime-gpu", "onnxconverter-common", "ai-edge-litert", "tensorrt", "dlib-bin",
    "dlib", "numpy", "pandas", "papermill", "nbval", "opencv-contrib-python-headless", "pillow", "psutil",
)


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds")


def _run(command: Iterable[str], cwd: Optional[Path] = None) -> Optional[str]:
    try:
        out = subprocess.run(list(command), cwd=str(cwd) if cwd else None, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, universal_newlines=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_revision(repo: Path = PROJECT_ROOT) -> Dict[str, Any]:
    """The commit the code ran from, and whether the work tree had uncommitted changes."""
    commit = _run(["git", "rev-parse", "HEAD"], repo)
    if commit is None:
        return {"commit": None, "dirty": None}
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], repo)
    return {"commit": commit, "dirty": bool(status)}


def package_versions(names: Iterable[str] = TRACKED_PACKAGES) -> Dict[str, str]:
    """Installed versions of the packages that decide a result (absent ones are left out)."""
    try:
        from importlib import metadata  # novermin  (guarded: 3.6 falls back to pkg_resources)
    except ImportError:  # Python 3.6 on JetPack 4.6
        import pkg_resources

        def version(name: str) -> str:
            return pkg_resources.get_distribution(name).version

        missing = (Exception,)
    else:
        version = metadata.version
        missing = (metadata.PackageNotFoundError,)
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except missing:
            continue
    return found


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(str(path), "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cpu_isa() -> str:
    """The widest x86 vector extension this CPU has (AVX-512 or AVX2): oneDNN, ONNX Runtime and
    XNNPACK choose kernels by it, so timings and low-order digits depend on it."""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return "unknown"
    words = set(flags.split())
    return "AVX-512" if "avx512f" in words else "AVX2" if "avx2" in words else "no AVX2"


def gpu_info() -> Dict[str, Any]:
    """NVIDIA GPUs via nvidia-smi; on a Jetson the L4T release and nvpmodel mode."""
    info = {"gpus": [], "driver": None}  # type: Dict[str, Any]
    if shutil.which("nvidia-smi"):
        out = _run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"])
        for line in (out or "").splitlines():
            name, memory, driver = [part.strip() for part in line.split(",")]
            info["gpus"].append({"name": name, "memory": memory})
            info["driver"] = driver
    tegra = Path("/etc/nv_tegra_release")
    if tegra.exists():
        info["l4t_release"] = tegra.read_text().splitlines()[0].strip()
        info["nvpmodel"] = _run(["nvpmodel", "-q"])
        model = Path("/proc/device-tree/model")
        if model.exists():
            info["gpus"].append({"name": model.read_text().strip("\x00 \n"), "memory": "shared"})
    return info


def host_info() -> Dict[str, Any]:
    import psutil

    return {
        "hostname": platform.node(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_isa": cpu_isa(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        **gpu_info(),
    }
