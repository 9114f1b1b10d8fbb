"""Browser figures for `make bench`: the chat in JupyterLab (and the same bundle over HTTP), in
Debian's Chromium. Returns markdown lines; empty with a message when there is no browser."""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser.conftest import CHROMIUM, FLAGS, HERE, _missing  # noqa: E402
from tests.browser.jupyter import KERNEL_IDLE, RUN_ALL, JupyterServer, write_notebook  # noqa: E402

# Installed before a turn: timestamps of Enter, the first character of the new reply, and the end.
WATCH = """() => {
  const n = document.querySelectorAll('.ckl-assistant').length;
  const t = window.__turn = { start: 0, first: 0, end: 0, longest: 0, frameGap: 0 };
  let last = 0;
  const frame = (now) => { if (t.first && last) t.frameGap = Math.max(t.frameGap, now - last); last = now; if (!t.end) requestAnimationFrame(frame); };
  requestAnimationFrame(frame);
  document.querySelector('.ckl-input').addEventListener('keydown', (e) => { if (e.key === 'Enter') t.start = performance.now(); }, { once: true, capture: true });
  const app = document.querySelector('.ckl-app');
  const obs = new MutationObserver(() => {
    const a = document.querySelectorAll('.ckl-assistant');
    if (!t.first && a.length > n && a[n].textContent.length) t.first = performance.now();
    if (t.first && !document.querySelector('.ckl-stop') && document.querySelector('.ckl-send')) { t.end = performance.now(); obs.disconnect(); }
  });
  obs.observe(app, { subtree: true, childList: true, characterData: true });
  new PerformanceObserver((list) => { for (const e of list.getEntries()) if (t.first && !t.end) t.longest = Math.max(t.longest, e.duration); }).observe({ type: 'longtask' });
}"""


def _turn(page, text: str) -> dict:
    page.evaluate(WATCH)
    box = page.locator("[data-testid='chat'] .ckl-input")
    box.fill(text)
    box.press("Enter")
    page.wait_for_function("() => window.__turn.end > 0", timeout=120_000)
    return page.evaluate("() => window.__turn")


def _turns(page, n: int) -> tuple[float, float]:
    firsts, ends = [], []
    for k in range(n + 2):
        t = _turn(page, f"turn {k}")
        if k >= 2:  # the first turns warm up
            firsts.append(t["first"] - t["start"])
            ends.append(t["end"] - t["start"])
    return statistics.median(firsts), statistics.median(ends)


def run(turns: int = 20, long_words: int = 1100, thread_items: int = 1000) -> list[str]:
    problem = _missing()
    if problem:
        return [f"## Browser\n\nSkipped: {problem}."]
    from playwright.sync_api import sync_playwright
    from starlette.applications import Starlette
    from starlette.responses import FileResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from chatkit_lab import ChatLab, RequestContext
    from chatkit_lab.transport.http import create_app
    from chatkit_lab.widget import STATIC

    lines = []
    with tempfile.TemporaryDirectory() as d, sync_playwright() as p:
        root = Path(d) / "root"
        root.mkdir()
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1000, "height": 900})

        # A thread of many items, written before the notebook's lab opens the same file.
        with ChatLab(root / "lab.duckdb") as seed:
            ctx = RequestContext("local")
            big = seed.send_sync("the long thread").thread_id
            from datetime import datetime, timedelta

            from chatkit.types import AssistantMessageContent, AssistantMessageItem

            for i in range(thread_items - 2):
                item = AssistantMessageItem(id=f"msg_big_{i}", thread_id=big, created_at=datetime.now() + timedelta(seconds=i),
                                            content=[AssistantMessageContent(text=f"reply number {i}", annotations=[])])
                seed.runtime.call(seed.store.add_thread_item(big, item, ctx))
        write_notebook(root / "bench.ipynb", 'from chatkit_lab import ChatLab, MirrorModel\nlab = ChatLab("lab.duckdb")\nchat = lab.chat()\nchat')
        server = JupyterServer(root, "lab")
        try:
            page.goto(server.url("bench.ipynb"))
            page.wait_for_function(KERNEL_IDLE, timeout=60_000)
            page.evaluate(RUN_ALL)
            page.locator("[data-testid='chat'] .ckl-input").wait_for(timeout=60_000)
            lab_first, lab_end = _turns(page, turns)

            # First paint of the 1,000-item thread: click to the first painted message.
            page.get_by_role("button", name="Threads").click()
            page.locator(".ckl-thread-open", has_text="the long thread").wait_for()
            page.evaluate("() => { window.__open = { start: 0, paint: 0 }; const o = new MutationObserver(() => { if (document.body.textContent.includes('reply number')) { o.disconnect(); requestAnimationFrame(() => (window.__open.paint = performance.now())); } }); o.observe(document.querySelector('.ckl-log'), { subtree: true, childList: true, characterData: true }); }")
            page.evaluate("() => { window.__open.start = performance.now(); [...document.querySelectorAll('.ckl-thread-open')].find(b => b.textContent === 'the long thread').click(); }")
            page.wait_for_function("() => window.__open.paint > 0", timeout=60_000)
            open_ms = page.evaluate("() => window.__open.paint - window.__open.start")
            shown = page.locator(".ckl-assistant").count()
            page.get_by_role("button", name="New chat").click()

            # A long reply of single-character deltas: does every character arrive, and what is
            # the longest main-thread task while it streams?
            page.evaluate("() => fetch")  # keep the page warm
            expected = " ".join(f"w{i}" for i in range(1, long_words + 1))
            kernel_code = "lab.close()\nlab = ChatLab('lab.duckdb', model=MirrorModel(chunk_size=1))\nchat = lab.chat()\nchat"
            page.evaluate("code => { const nb = window.jupyterapp.shell.currentWidget; nb.content.activeCell.model.sharedModel.setSource(code); }", kernel_code)
            page.evaluate(RUN_ALL)
            page.wait_for_function("() => document.querySelectorAll(\"[data-testid='chat'] .ckl-input\").length >= 1 && !document.querySelector('.ckl-assistant')", timeout=60_000)
            page.locator("[data-testid='chat'] .ckl-input").last.wait_for()
            t = _turn(page, f"/words {long_words}")
            arrived = page.locator(".ckl-assistant .ckl-md").last.inner_text().strip()
        finally:
            server.stop()

        # The same turns over the HTTP endpoint: the same bundle on a plain page.
        with ChatLab(Path(d) / "http.duckdb") as lab:
            app = Starlette(routes=[
                Route("/", lambda r: FileResponse(HERE / "harness.html")),
                Mount("/static", StaticFiles(directory=STATIC)),
                Mount("/", create_app(lab.server, user_id=lab.user_id)),
            ])
            url = lab.runtime.serve_app(app, "127.0.0.1", 0)
            page.goto(url + "/")
            page.locator("[data-testid='chat'] .ckl-input").wait_for()
            http_first, http_end = _turns(page, turns)
        browser.close()

    lines += [
        f"## Browser: the chat in JupyterLab (Chromium, offline model, p50 of {turns} turns)\n",
        "| path | Enter to first character ms | Enter to finished reply ms |\n|---|---|---|",
        f"| JupyterLab, comm tunnel to the kernel | {lab_first:.0f} | {lab_end:.0f} |",
        f"| the same bundle over HTTP on 127.0.0.1 | {http_first:.0f} | {http_end:.0f} |",
        f"\n- comm tunnel / HTTP, to the finished reply: **{lab_end / http_end:.2f}x**; to the first character: {lab_first / http_first:.2f}x",
        f"- a {len(expected):,}-delta reply (one character each): {'all text arrived' if arrived == expected else f'TEXT LOST ({len(arrived)} of {len(expected)} characters)'}"
        f" in {t['end'] - t['start']:.0f} ms; longest gap between frames while streaming: **{t['frameGap']:.0f} ms**"
        f" ({'no main-thread task over 50 ms' if not t['longest'] else 'longest main-thread task ' + format(t['longest'], '.0f') + ' ms'})",
        f"- opening a thread of {thread_items:,} items: first paint after **{open_ms:.0f} ms** (the newest {shown} messages; older ones page in on demand)",
    ]
    return lines


if __name__ == "__main__":
    print("\n".join(run()))
