"""`make lab` opens JupyterLab on the quickstart notebook, as root too (containers, CI, clouds)."""

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from .conftest import free_port

ROOT = Path(__file__).parent.parent


@pytest.mark.skipif(os.geteuid() != 0, reason="the refusal is root's; this suite runs as another user")
def test_make_lab_as_root_serves_the_quickstart(tmp_path):
    port, token = free_port(), "make-lab-test"
    env = {**os.environ, "HOME": str(tmp_path), "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
           "JUPYTER_DATA_DIR": str(tmp_path / "data"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"), "BROWSER": "true"}
    args = f"LAB_ARGS=--no-browser --ip=127.0.0.1 --port={port} --IdentityProvider.token={token}"
    proc = subprocess.Popen(["make", "-s", "lab", args], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, last = time.monotonic() + 90, None
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()[-2000:] if proc.stdout else "make lab exited"
            try:
                last = httpx.get(f"http://127.0.0.1:{port}/api/contents/01_quickstart.ipynb", params={"token": token, "content": 0}, timeout=2)
                if last.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        assert last is not None and last.status_code == 200, last
        assert last.json()["type"] == "notebook"  # served from notebooks/, the quickstart's folder
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
