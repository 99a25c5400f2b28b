"""The notebooks as a researcher steps through them: a real JupyterLab server on localhost, a
session on the `lightfer` kernel opened through its REST API, and 07's cells sent one by one over
the kernel's websocket (the Jupyter messaging protocol), not through papermill."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOISE = ("absl::InitializeLog", "cuInit", "oneDNN custom operations", "cuda_platform", "Could not find cuda")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def api(base: str, token: str, path: str, payload: dict | None = None) -> dict:
    request = urllib.request.Request(f"{base}{path}", method="POST" if payload is not None else "GET",
                                     data=json.dumps(payload).encode() if payload is not None else None,
                                     headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"{}")


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on localhost, with a token, serving tmp_path; stopped afterwards."""
    from lightfer_utils.kernel import KERNEL_NAME, installed

    if not installed():
        pytest.fail(f"the {KERNEL_NAME!r} kernel is not installed: python -m lightfer_utils.kernel install (make setup)")
    port, token = free_port(), secrets.token_hex(16)
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt")})
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                api(base, token, "/api/status")
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not answer within 60 s")
        yield base, token
    finally:
        server.terminate()
        server.wait(timeout=30)


def execute(channel, code: str, timeout: float = 300) -> list[dict]:
    """Send one execute_request on the shell channel; the iopub messages it caused, until idle."""
    msg_id = uuid.uuid4().hex
    channel.send(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": uuid.uuid4().hex,
                   "date": "", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False,
                    "stop_on_error": True}}))
    messages, deadline = [], time.time() + timeout
    while time.time() < deadline:
        message = json.loads(channel.recv())
        if message.get("parent_header", {}).get("msg_id") != msg_id or message.get("channel") != "iopub":
            continue
        if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            return messages
        messages.append(message)
    pytest.fail(f"the kernel did not finish a cell within {timeout} s")


def test_07_steps_through_in_jupyterlab_on_the_lightfer_kernel_quietly(lab, tmp_path):
    import websocket

    base, token = lab
    run = tmp_path / "run"
    shutil.copytree(ROOT / "papermill_runs" / "smoke", run, ignore=shutil.ignore_patterns("*.ipynb"))
    for folder in ("figures",):
        shutil.rmtree(run / folder, ignore_errors=True)
    notebook = json.loads((ROOT / "notebooks" / "07_tables.ipynb").read_text())
    session = api(base, token, "/api/sessions", {"path": "07_tables.ipynb", "type": "notebook",
                                                 "kernel": {"name": notebook["metadata"]["kernelspec"]["name"]}})
    assert session["kernel"]["name"] == "lightfer"
    channel = websocket.create_connection(
        f"ws://127.0.0.1:{base.rsplit(':', 1)[1]}/api/kernels/{session['kernel']['id']}/channels?token={token}", timeout=300)
    try:
        outputs = []
        for cell in notebook["cells"]:
            if cell["cell_type"] != "code":
                continue
            code = "".join(cell["source"])
            if "parameters" in cell.get("metadata", {}).get("tags", []):
                code += f"\nrun_dir = {str(run)!r}"  # as papermill's injected cell would
            messages = execute(channel, code)
            errors = [m["content"] for m in messages if m["msg_type"] == "error"]
            assert not errors, f"cell failed: {code[:80]!r}: {errors[0]['ename']}: {errors[0]['evalue']}"
            outputs += messages
    finally:
        channel.close()
    stderr = "".join(m["content"]["text"] for m in outputs if m["msg_type"] == "stream" and m["content"]["name"] == "stderr")
    assert not any(noise in stderr for noise in NOISE), stderr[:2000]
    shown = [m for m in outputs if m["msg_type"] in ("execute_result", "display_data")]
    assert any("text/html" in m["content"]["data"] for m in shown)  # the tables, as the researcher sees them
    assert (run / "tables" / "paper_table2.md").is_file() and list((run / "figures").glob("paper_*.png"))
    assert (run / "REPRODUCTION.md").is_file()
