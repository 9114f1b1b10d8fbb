"""The chat in a real JupyterLab (and Notebook 7), in Debian's Chromium: no port, no internet."""

import pytest

from .jupyter import CHAT_CELL, EXECUTE, KERNEL_IDLE, RUN_ALL, JupyterServer, write_notebook

CHAT = ".jp-OutputArea-output [data-testid='chat']"


@pytest.fixture(scope="module")
def jupyter_lab(tmp_path_factory, browser):
    root = tmp_path_factory.mktemp("lab-root")
    write_notebook(root / "chat.ipynb")
    server = JupyterServer(root, "lab")
    yield server
    server.stop()


def open_and_run(page, url):
    page.goto(url)
    page.wait_for_function(KERNEL_IDLE, timeout=60_000)
    page.evaluate(RUN_ALL)
    page.locator(f"{CHAT} .ckl-input").wait_for(timeout=60_000)


def send(page, text):
    box = page.locator(f"{CHAT} .ckl-input")
    box.fill(text)
    box.press("Enter")


def converse(page, *messages):
    """Send each message in the chat and wait for its reply."""
    for text in messages:
        send(page, text)
        page.wait_for_function(f"() => [...document.querySelectorAll('.ckl-assistant')].some(e => e.textContent.includes({text!r}))", timeout=30_000)
        idle(page)


def idle(page):
    page.wait_for_function("() => !document.querySelector('.ckl-stop') && !!document.querySelector('.ckl-send')", timeout=30_000)


def test_chat_in_jupyterlab_streams_stops_switches_threads_and_survives_a_reload(page, jupyter_lab):
    open_and_run(page, jupyter_lab.url("chat.ipynb"))
    # Offline, the official component cannot load: the built-in renderer takes over and says why.
    assert "could not be loaded" in page.locator(f"{CHAT} [data-testid='builtin-badge']").first.get_attribute("title")
    send(page, "hello from the browser")
    page.wait_for_function("() => (document.querySelector('.ckl-assistant')?.textContent || '').includes('you said')", timeout=30_000)
    idle(page)
    assert page.evaluate(EXECUTE, "print(chat.status.split(':')[0], chat.thread_id == lab.threads_df().thread_id[0])") == "builtin True\n"

    send(page, "/words 3000")  # long: stop it part way
    page.wait_for_function("() => (document.querySelectorAll('.ckl-assistant')[1]?.textContent || '').includes('w30')", timeout=30_000)
    page.locator(".ckl-stop").click()
    idle(page)
    partial = page.locator(".ckl-assistant .ckl-md").nth(1).inner_text().strip()
    assert "w30" in partial and "w3000" not in partial
    assert page.locator(".ckl-assistant").nth(1).locator(".ckl-stopped").count() == 1
    saved = page.evaluate(EXECUTE, "import time; time.sleep(0.5); print(lab.sql(\"SELECT text FROM items WHERE type = 'assistant_message' ORDER BY created_at\").text.iloc[-1])")
    assert saved.strip() == partial  # through the comm, Stop shows exactly what was saved

    page.get_by_role("button", name="New chat").click()
    send(page, "second thread")
    page.wait_for_function("() => document.querySelector('.ckl-title').textContent === 'second thread'", timeout=30_000)
    idle(page)
    page.get_by_role("button", name="Threads").click()
    page.locator(".ckl-thread-open", has_text="hello from the browser").click()
    page.wait_for_function("() => document.querySelectorAll('.ckl-assistant').length === 2", timeout=30_000)

    rows = page.evaluate(EXECUTE, "print(lab.sql(\"SELECT count(*) FILTER (type = 'assistant_message') AS a, count(DISTINCT thread_id) AS t FROM items\").values.tolist())")
    assert rows.strip() == "[[3, 2]]"

    # Reload the page and run the notebook again: the history comes back from DuckDB.
    page.evaluate(EXECUTE, "lab.close()")
    open_and_run(page, jupyter_lab.url("chat.ipynb"))
    page.get_by_role("button", name="Threads").click()
    page.locator(".ckl-thread-open").nth(1).wait_for()
    assert sorted(page.locator(".ckl-thread-open").all_inner_texts()) == ["hello from the browser", "second thread"]
    page.locator(".ckl-thread-open", has_text="hello from the browser").click()
    page.wait_for_function("() => document.querySelectorAll('.ckl-assistant').length === 2", timeout=30_000)
    assert "w3000" not in page.locator(".ckl-assistant").nth(1).inner_text()
    page.evaluate(EXECUTE, "lab.close()")


def test_a_cell_can_send_while_the_chat_is_open_and_the_chat_follows(page, jupyter_lab):
    open_and_run(page, jupyter_lab.url("chat.ipynb"))
    background = "() => getComputedStyle(document.querySelector('.ckl-app')).backgroundColor"
    light = page.evaluate(background)
    page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})")
    page.wait_for_function(f"() => ({background})() !== {light!r}")  # the chat follows the theme
    page.evaluate(EXECUTE, "turn = await lab.send('sent from a cell')")
    page.wait_for_function("() => [...document.querySelectorAll('.ckl-user')].some(e => e.textContent === 'sent from a cell')", timeout=30_000)
    page.wait_for_function("() => (document.querySelector('.ckl-assistant')?.textContent || '').includes('sent from a cell')", timeout=30_000)
    assert page.evaluate(EXECUTE, "print(chat.thread_id == turn.thread_id)") == "True\n"

    # Without a thread, a cell's message goes to the thread the chat shows.
    page.evaluate(EXECUTE, "again = await lab.send('and again from a cell')")
    page.wait_for_function("() => document.querySelectorAll('.ckl-user').length === 2", timeout=30_000)
    assert page.evaluate(EXECUTE, "print(again.thread_id == turn.thread_id)") == "True\n"

    # Python sets the thread: the chat switches (a trait synced to the browser).
    page.evaluate(EXECUTE, "other = await lab.send('another thread', new_thread=True); chat.thread_id = turn.thread_id; chat.thread_id = other.thread_id")
    page.wait_for_function("() => document.querySelector('.ckl-title').textContent === 'another thread'", timeout=30_000)

    # A reply keeps streaming while a blocking cell runs in the kernel.
    page.get_by_role("button", name="New chat").click()
    send(page, "/words 900")
    page.wait_for_function("() => (document.querySelector('.ckl-assistant')?.textContent || '').length > 50", timeout=30_000)
    page.evaluate("() => { window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.requestExecute({ code: 'import time; time.sleep(3)' }); }")
    page.wait_for_function("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'busy'", timeout=10_000)
    before = len(page.locator(".ckl-assistant").inner_text())
    page.wait_for_function(f"() => document.querySelector('.ckl-assistant').textContent.length > {before + 200}", timeout=10_000)
    assert page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status") == "busy"
    idle(page)
    assert "w900" in page.locator(".ckl-assistant").inner_text()
    page.evaluate(EXECUTE, "lab.close()")


def test_the_same_smoke_turn_in_notebook_7(page, tmp_path_factory, browser):
    root = tmp_path_factory.mktemp("nb7-root")
    write_notebook(root / "chat.ipynb")
    server = JupyterServer(root, "notebook")
    try:
        open_and_run(page, server.url("chat.ipynb", app="notebook"))
        send(page, "hello notebook 7")
        page.wait_for_function("() => (document.querySelector('.ckl-assistant')?.textContent || '').includes('you said')", timeout=30_000)
        idle(page)
        assert page.evaluate(EXECUTE, "print(len(lab.items_df()))") == "2\n"
        page.evaluate(EXECUTE, "lab.close()")
    finally:
        server.stop()


def test_login_switches_the_chats_user_and_the_page_context_reaches_the_model(page, jupyter_lab):
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Churn study\n\n## Load the data"), nbformat.v4.new_code_cell(CHAT_CELL.replace("lab.duckdb", "auth.duckdb"))])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, jupyter_lab.root / "auth.ipynb")
    open_and_run(page, jupyter_lab.url("auth.ipynb"))
    page.evaluate(EXECUTE, "lab.login('alice', name='Alice')")
    send(page, "hello from alice")
    page.wait_for_function("() => (document.querySelector('.ckl-assistant')?.textContent || '').includes('hello from alice')", timeout=30_000)
    idle(page)
    seen = page.evaluate(EXECUTE, "c = lab.inspect().context; print(c['user']['name'], c['page']['path'], c['page']['title'], c['page']['headings'])")
    assert seen == "Alice auth.ipynb Churn study ['Churn study', 'Load the data']\n"
    assert "eyJ" not in page.evaluate(EXECUTE, "print(chat.get_state())")  # the token is in no trait
    page.evaluate(EXECUTE, "lab.login('bob')")
    page.wait_for_function("() => document.querySelectorAll('.ckl-assistant').length === 0", timeout=30_000)
    send(page, "hello from bob")
    page.wait_for_function("() => (document.querySelector('.ckl-assistant')?.textContent || '').includes('hello from bob')", timeout=30_000)
    idle(page)
    owners = page.evaluate(EXECUTE, "print(sorted(lab.threads_df(all_users=True).user_id))")
    assert owners == "['alice', 'bob']\n"
    page.evaluate(EXECUTE, "lab.close()")


def test_fork_from_a_reply_in_the_chat_and_open_a_replay_from_a_cell(page, jupyter_lab):
    write_notebook(jupyter_lab.root / "fork.ipynb", CHAT_CELL.replace("lab.duckdb", "fork.duckdb"))
    open_and_run(page, jupyter_lab.url("fork.ipynb"))
    converse(page, "plan the trip", "add a museum")
    page.get_by_role("button", name="Fork from here").first.click()
    page.wait_for_function("() => document.querySelector('.ckl-title').textContent === 'plan the trip (fork)'", timeout=30_000)
    assert page.locator(".ckl-assistant").count() == 1
    send(page, "go to the beach instead")
    page.wait_for_function("() => (document.querySelectorAll('.ckl-assistant')[1]?.textContent || '').includes('2 earlier items')", timeout=30_000)
    idle(page)
    seen = page.evaluate(EXECUTE, "t = lab.threads_df().set_index('title'); print(t.loc['plan the trip (fork)', 'lineage'], t.loc['plan the trip (fork)', 'parent_thread_id'] == t.loc['plan the trip', 'thread_id'], chat.thread_id == t.loc['plan the trip (fork)', 'thread_id'])")
    assert seen == "fork True True\n"

    # A replay is an ordinary thread: a cell opens it in the chat.
    page.evaluate(EXECUTE, "r = lab.replay(lab.threads_df().set_index('title').loc['plan the trip', 'thread_id'], instructions='Be a pirate.'); await r.run(progress=False); chat.thread_id = r.thread_id")
    page.wait_for_function("() => document.querySelector('.ckl-title').textContent === 'plan the trip (replay)'", timeout=30_000)
    page.wait_for_function("() => document.querySelectorAll('.ckl-assistant').length === 2 && document.querySelector('.ckl-assistant').textContent.includes('Be a pirate.')", timeout=30_000)
    page.evaluate(EXECUTE, "lab.close()")


def assert_shift_enter_is_a_newline(page):
    """Shift+Enter in the composer makes a newline; the cell is not run again (same chat, [1])."""
    prompt = ".jp-CodeCell .jp-InputPrompt"
    page.wait_for_function(f"() => /\\[1\\]/.test(document.querySelector('{prompt}').textContent)", timeout=30_000)
    page.evaluate(f"() => {{ document.querySelector(\"{CHAT}\").marked = true; }}")
    box = page.locator(f"{CHAT} .ckl-input")
    box.click()
    box.type("a draft")
    box.press("Shift+Enter")
    box.type("second line")
    page.wait_for_timeout(1000)  # a re-run would have replaced the output by now
    assert box.input_value() == "a draft\nsecond line"
    assert page.evaluate(f"() => document.querySelector(\"{CHAT}\").marked") is True  # the same chat, not rebuilt
    assert "[1]" in page.locator(prompt).first.inner_text()
    box.fill("")


def assert_code_inserts_below(page):
    """The scripted reply's code block goes into a new cell below the chat's (CODE_CELL)."""
    send(page, "some code please")
    page.locator(f"{CHAT} .ckl-code").wait_for(timeout=30_000)
    idle(page)
    page.get_by_role("button", name="Insert as a cell below").click()
    cells = "() => window.jupyterapp.shell.currentWidget.content.model.sharedModel.cells.map(c => c.source)"
    page.wait_for_function(f"() => ({cells})().length === 2", timeout=10_000)
    assert page.evaluate(cells)[1] == "# add one\nx = 1 + 1"


def test_the_composer_keeps_its_keys_shift_enter_is_a_newline_not_run_cell(page, jupyter_lab):
    write_notebook(jupyter_lab.root / "keys.ipynb", CHAT_CELL.replace("lab.duckdb", "keys.duckdb"))
    open_and_run(page, jupyter_lab.url("keys.ipynb"))
    assert_shift_enter_is_a_newline(page)
    assert page.evaluate(EXECUTE, "print(len(lab.items_df()))") == "0\n"
    page.evaluate(EXECUTE, "lab.close()")


def test_a_closed_lab_and_a_restarted_kernel_say_what_happened_and_keep_the_message(page, jupyter_lab):
    write_notebook(jupyter_lab.root / "dead.ipynb", CHAT_CELL.replace("lab.duckdb", "dead.duckdb"))
    open_and_run(page, jupyter_lab.url("dead.ipynb"))
    page.evaluate(EXECUTE, "lab.close()")
    send(page, "after close")
    page.locator(f"{CHAT} .ckl-error", has_text="This lab was closed (lab.close()): run the cell that creates it again.").wait_for(timeout=10_000)
    assert page.locator(f"{CHAT} .ckl-input").input_value() == "after close"
    assert page.locator(f"{CHAT} [data-testid='kernel-status']").count() == 0  # the kernel itself is fine

    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.restart()")
    page.wait_for_function(KERNEL_IDLE, timeout=60_000)
    page.locator(f"{CHAT} .ckl-input").fill("after restart")
    page.locator(f"{CHAT} .ckl-input").press("Enter")
    page.locator(f"{CHAT} [data-testid='kernel-status']", has_text="The kernel restarted or shut down").wait_for(timeout=10_000)
    assert page.locator(f"{CHAT} .ckl-input").input_value() == "after restart"
    assert "kernel restarted — re-run" not in page.locator(CHAT).inner_text()

    page.evaluate(RUN_ALL)  # running the cell again gives a working chat
    page.wait_for_function(f"() => !document.querySelector(\"{CHAT} [data-testid='kernel-status']\")", timeout=60_000)
    send(page, "works again")
    page.wait_for_function("() => (document.querySelector('.ckl-assistant')?.textContent || '').includes('works again')", timeout=30_000)
    idle(page)
    page.evaluate(EXECUTE, "lab.close()")


def test_a_cell_send_shows_live_in_the_official_component(page, jupyter_lab):
    from pathlib import Path

    (jupyter_lab.root / "standin-chatkit.js").write_text((Path(__file__).parent / "standin-chatkit.js").read_text())
    cell = CHAT_CELL.replace("lab.duckdb", "official.duckdb").replace("lab.chat()", "lab.chat(ui='chatkit', chatkit_url='/files/standin-chatkit.js')")
    write_notebook(jupyter_lab.root / "official.ipynb", cell)
    page.goto(jupyter_lab.url("official.ipynb"))
    page.wait_for_function(KERNEL_IDLE, timeout=60_000)
    page.evaluate(RUN_ALL)
    page.wait_for_function("() => !!document.querySelector('openai-chatkit')?.options", timeout=60_000)
    page.wait_for_function("async () => (await window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.requestExecute({code: ''}).done) && true", timeout=30_000)
    page.evaluate(EXECUTE, "turn = await lab.send('from a cell to the element')")
    page.wait_for_function("() => (document.querySelector('.standin-reply')?.textContent || '').includes('from a cell to the element')", timeout=30_000)
    page.evaluate(EXECUTE, "again = await lab.send('and once more')")
    page.wait_for_function("() => document.querySelectorAll('.standin-user').length === 2", timeout=30_000)
    assert page.evaluate(EXECUTE, "print(chat.status.split(':')[0], again.thread_id == turn.thread_id == chat.thread_id)") == "chatkit True\n"
    page.evaluate(EXECUTE, "lab.close()")


CONTRAST = """(pair) => {
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (c) => { const v = rgb(c).map((x) => { x /= 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; }); return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
  const [fg, bg] = pair.map((sel, i) => getComputedStyle(document.querySelector(sel))[i ? 'backgroundColor' : 'color']);
  const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05); }"""

CODE_CELL = '''from agents.testing import ScriptedModel, assistant_message
from chatkit_lab import ChatLab
reply = "Try this:\\n\\n```python\\n# add one\\nx = 1 + 1\\n```\\n"
lab = ChatLab("code.duckdb", model=ScriptedModel([[assistant_message(reply, item_id="r")]]))
chat = lab.chat()
chat'''


def test_code_inserts_as_a_cell_below_and_keeps_its_contrast_in_the_dark_theme(page, jupyter_lab):
    write_notebook(jupyter_lab.root / "code.ipynb", CODE_CELL)
    open_and_run(page, jupyter_lab.url("code.ipynb"))
    assert_code_inserts_below(page)
    for theme in ("JupyterLab Light", "JupyterLab Dark"):
        page.evaluate(f"() => window.jupyterapp.commands.execute('apputils:change-theme', {{theme: '{theme}'}})")
        page.wait_for_function(f"() => document.body.dataset.jpThemeName === '{theme}'", timeout=10_000)
        page.wait_for_timeout(300)
        comment = page.evaluate(CONTRAST, [".ckl-md .hljs-comment", ".ckl-md pre"])
        prose = page.evaluate(CONTRAST, [".ckl-md p", ".ckl-app"])
        assert comment >= 4.5 and prose >= 4.5, (theme, comment, prose)
    page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Light'})")
    page.evaluate(EXECUTE, "lab.close()")


def test_edit_a_message_and_send_it_again_in_a_fork(page, jupyter_lab):
    write_notebook(jupyter_lab.root / "edit.ipynb", CHAT_CELL.replace("lab.duckdb", "edit.duckdb"))
    open_and_run(page, jupyter_lab.url("edit.ipynb"))
    converse(page, "plan the trip", "add a museum")
    page.locator(".ckl-user").nth(1).hover()
    page.locator(".ckl-user").nth(1).get_by_role("button", name="Edit and send again").click()
    box = page.get_by_label("Edited message")
    assert box.input_value() == "add a museum"
    box.fill("add a beach")
    box.press("Enter")
    page.wait_for_function("() => document.querySelector('.ckl-title').textContent === 'plan the trip (edited)'", timeout=30_000)
    page.wait_for_function("() => [...document.querySelectorAll('.ckl-assistant')].some(e => e.textContent.includes('add a beach'))", timeout=30_000)
    idle(page)
    assert page.locator(".ckl-user").all_inner_texts() == ["plan the trip", "add a beach"]
    seen = page.evaluate(EXECUTE, "t = lab.threads_df().set_index('title'); print(t.loc['plan the trip (edited)', 'lineage'], len(lab.items_df(t.loc['plan the trip', 'thread_id'])))")
    assert seen == "edit 4\n"  # the original thread is unchanged
    page.evaluate(EXECUTE, "lab.close()")


def test_in_notebook_7_the_composer_keeps_its_keys_and_code_inserts_below(page, tmp_path_factory, browser):
    root = tmp_path_factory.mktemp("nb7-keys")
    write_notebook(root / "code.ipynb", CODE_CELL)
    server = JupyterServer(root, "notebook")
    try:
        open_and_run(page, server.url("code.ipynb", app="notebook"))
        assert_shift_enter_is_a_newline(page)
        assert_code_inserts_below(page)
        page.evaluate(EXECUTE, "lab.close()")
    finally:
        server.stop()
