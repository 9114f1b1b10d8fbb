"""Workflows in a real browser: the graph view's layout, and a workflow chat in JupyterLab with an approval."""

import itertools

import pytest

from chatkit_lab.workflows import Workflow, templates

from .jupyter import EXECUTE, JupyterServer, write_notebook
from .test_jupyterlab import CHAT, idle, open_and_run, send

BOXES = """() => [...document.querySelectorAll('.ckl-node')].map(g => {
  const r = g.querySelector('rect').getBBox(), t = g.querySelector('text').getBBox();
  return {id: g.dataset.node, x: r.x, y: r.y, w: r.width, h: r.height, text: t.width, hot: g.classList.contains('ckl-on-path')};
})"""


def _overlap(a, b):
    return a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]


@pytest.mark.parametrize("name", ["customer-support", "research-assistant", "imported-support"])
def test_the_graph_view_lays_nodes_out_apart_with_legible_names_and_highlights_a_run(page, name):
    if name == "imported-support":
        from pathlib import Path

        wf = Workflow.from_agent_builder(Path(__file__).parent.parent / "fixtures" / "agent_builder" / "support.py").workflow  # 17 nodes
        path = ["start", "guardrails", "policies", "classifier", "if_else", "fallback", "end4"]
    else:
        wf = templates.TEMPLATES[name]()
        path = wf.run_sync("billing question about my invoice").path
    page.set_content(f"<html><body style='margin:0'>{wf.show(path)._repr_html_()}</body></html>")
    boxes = page.evaluate(BOXES)
    assert len(boxes) == len(wf.nodes)
    assert not [(a["id"], b["id"]) for i, a in enumerate(boxes) for b in boxes[i + 1:] if _overlap(a, b)]
    assert all(b["text"] <= b["w"] - 4 for b in boxes), "a node's name overflows its box"
    assert {b["id"] for b in boxes if b["hot"]} == set(path)
    taken = {(a, b) for a, b in itertools.pairwise(path) if any(e.source == a and e.target == b for e in wf.edges)}
    assert page.locator(".ckl-edge.ckl-taken").count() == len(taken) and page.locator(".ckl-edge").count() == len(wf.edges)
    labels = page.evaluate("() => [...document.querySelectorAll('.ckl-edge-label text')].map(t => t.textContent)")
    assert sorted(labels) == sorted(e.label for e in wf.edges if e.label)
    assert page.errors == []


WORKFLOW_CELL = """from agents import function_tool
from chatkit_lab import ChatLab, MirrorModel
from chatkit_lab.workflows import templates
@function_tool(needs_approval=True)
def delete_file(path: str) -> str:
    \"\"\"Delete a file.\"\"\"
    return f"deleted {path}"
lab = ChatLab("lab.duckdb", model=MirrorModel(delay=0.01), workflow=templates.customer_service(), tools=[delete_file])
chat = lab.chat()
chat"""


@pytest.fixture(scope="module")
def workflow_lab(tmp_path_factory, browser):
    root = tmp_path_factory.mktemp("workflow-root")
    write_notebook(root / "workflow.ipynb", WORKFLOW_CELL)
    server = JupyterServer(root, "lab")
    yield server
    server.stop()


def test_a_workflow_chat_shows_node_tasks_and_an_approval_clicked_in_jupyterlab_resumes_it(page, workflow_lab):
    open_and_run(page, workflow_lab.url("workflow.ipynb"))
    send(page, "I want to return_item my shoes")
    page.locator(f"{CHAT} .ckl-w-button", has_text="Approve").wait_for(timeout=30_000)
    tasks = page.locator(f"{CHAT} .ckl-task-title").all_inner_texts()
    assert any(t.startswith("Classifier · agent") for t in tasks) and any(t.startswith("Route · if_else") for t in tasks)
    assert page.locator(f"{CHAT} .ckl-w-card").inner_text().startswith("Approve the return")
    page.locator(f"{CHAT} .ckl-w-button", has_text="Approve").click()
    page.wait_for_function("() => [...document.querySelectorAll('.ckl-assistant')].some(e => e.textContent.includes('Your return is approved'))",
                           timeout=30_000)
    idle(page)
    assert page.locator(f"{CHAT} .ckl-w-button", has_text="Approve").count() == 0  # the card says who decided instead
    assert "Approved by local" in page.locator(f"{CHAT} .ckl-w-card").inner_text()
    out = page.evaluate(EXECUTE, "print(lab.nodes_df().node_id.tolist()[-3:], lab.turns_df().status.tolist())")
    assert out == "['approve_return', 'approved', 'return_done'] ['paused', 'completed']\n"
    # The agent alone, with a tool that needs approval: the same card, and the run goes on after the click.
    page.evaluate(EXECUTE, "lab.use_workflow(None)")
    send(page, 'call delete_file {"path": "notes.txt"}')
    page.locator(f"{CHAT} .ckl-w-card", has_text="Assistant asks to call a tool").wait_for(timeout=30_000)
    assert 'delete_file({"path": "notes.txt"})' in page.locator(f"{CHAT} .ckl-w-card").last.inner_text()
    page.locator(f"{CHAT} .ckl-w-button", has_text="Approve").click()
    page.wait_for_function("() => [...document.querySelectorAll('.ckl-assistant')].some(e => e.textContent.includes('deleted notes.txt'))",
                           timeout=30_000)
    idle(page)
    assert "Approved by local" in page.locator(f"{CHAT} .ckl-w-card").last.inner_text()
    assert page.evaluate(EXECUTE, "print(lab.sql('SELECT status, decision FROM tool_approvals').values.tolist())") == "[['decided', 'approve']]\n"
