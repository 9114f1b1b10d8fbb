"""A real Jupyter server (JupyterLab or Notebook 7) on 127.0.0.1, for browser tests."""

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat

from ..conftest import free_port

CHAT_CELL = """from chatkit_lab import ChatLab, MirrorModel
lab = ChatLab("lab.duckdb", model=MirrorModel(delay=0.01))
chat = lab.chat()
chat"""


def write_notebook(path: Path, source: str = CHAT_CELL) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


class JupyterServer:
    def __init__(self, root: Path, app: str = "lab") -> None:
        self.root, self.token, self.port = root, secrets.token_hex(16), free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        home = root.parent / f"jupyter-{app}-home"
        settings = home / "settings"
        for name, value in {
            "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
            "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        }.items():
            (settings / name).parent.mkdir(parents=True, exist_ok=True)
            (settings / name).write_text(json.dumps(value))
        env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "cfg"), JUPYTER_RUNTIME_DIR=str(home / "rt"),
                   JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(home / "ws"), IPYTHONDIR=str(home / "ipython"))
        env = {k: v for k, v in env.items() if not k.startswith("OPENAI_")}
        self.log = open(home / "server.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", app, "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
             f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}", "--allow-root",
             "--LabApp.news_url=None", "--expose-app-in-browser"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.base}/api/status?token={self.token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert self.proc.poll() is None, (home / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Jupyter server did not start"
            time.sleep(0.2)

    def url(self, notebook: str, app: str = "lab") -> str:
        path = f"lab/tree/{notebook}?reset&" if app == "lab" else f"notebooks/{notebook}?"
        return f"{self.base}/{path}token={self.token}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


KERNEL_IDLE = """() => { const w = window.jupyterapp?.shell?.currentWidget;
  const k = w?.sessionContext?.session?.kernel;
  return !!(w?.context?.isReady && k && k.connectionStatus === 'connected' && k.status === 'idle'); }"""

RUN_ALL = "() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }"

# Run code in the page's kernel and collect what it prints (checks Python-side state).
EXECUTE = """async (code) => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const future = kernel.requestExecute({ code });
  let out = '';
  future.onIOPub = (msg) => { if (msg.header.msg_type === 'stream') out += msg.content.text; };
  await future.done;
  return out; }"""
