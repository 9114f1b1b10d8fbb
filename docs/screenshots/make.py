"""Take the README's screenshots: the chat in a real JupyterLab, light and dark.

    .venv/bin/python docs/screenshots/make.py

Writes chat-light.png and chat-dark.png beside this file (Debian's Chromium, offline model).
"""

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent.parent))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.browser.conftest import CHROMIUM, FLAGS  # noqa: E402
from tests.browser.jupyter import EXECUTE, KERNEL_IDLE, RUN_ALL, JupyterServer, write_notebook  # noqa: E402

CELL = '''from agents.testing import ScriptedModel, assistant_message
from chatkit_lab import ChatLab
reply = """Here is the churn rate by plan:

| plan | customers | churn |
|:-----|----------:|------:|
| free | 1,204 | 8.1% |
| pro | 311 | 2.4% |

```python
# churn by plan
df.groupby("plan").churned.mean()
```

The gap is $\\\\Delta = 5.7$ points."""
lab = ChatLab("shots.duckdb", model=ScriptedModel([[assistant_message(reply, item_id="r")]]))
chat = lab.chat(options={"title": "Churn study"})
chat'''


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        write_notebook(root / "shots.ipynb", CELL)
        server = JupyterServer(root, "lab")
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
                page = browser.new_page(viewport={"width": 980, "height": 900}, device_scale_factor=1)
                page.goto(server.url("shots.ipynb"))
                page.wait_for_function(KERNEL_IDLE, timeout=60_000)
                page.evaluate(RUN_ALL)
                chat = page.locator(".jp-OutputArea-output [data-testid='chat']")
                chat.locator(".ckl-input").wait_for(timeout=60_000)
                chat.locator(".ckl-input").fill("What is the churn rate by plan?")
                chat.locator(".ckl-input").press("Enter")
                chat.locator(".ckl-code").wait_for(timeout=30_000)
                page.wait_for_function("() => !document.querySelector('.ckl-stop')")
                for theme, name in (("JupyterLab Light", "chat-light.png"), ("JupyterLab Dark", "chat-dark.png")):
                    page.evaluate(f"() => window.jupyterapp.commands.execute('apputils:change-theme', {{theme: '{theme}'}})")
                    page.wait_for_function(f"() => document.body.dataset.jpThemeName === '{theme}'")
                    page.wait_for_timeout(500)
                    chat.screenshot(path=str(HERE / name))
                    print("wrote", HERE / name)
                page.evaluate(EXECUTE, "lab.close()")
                browser.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
