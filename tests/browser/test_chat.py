"""The chat as people expect it, on the harness page in Chromium: the composer, honest kernel
states, scrolling, in-chat questions, client effects and the official element's live updates."""

import time

from agents import Agent, RunContextWrapper, function_tool
from chatkit.agents import AgentContext
from chatkit.types import (
    ClientEffectEvent,
    StructuredInputFreeform,
    StructuredInputItem,
    StructuredInputMultipleChoice,
    StructuredInputMultipleChoiceOption,
    ThreadItemDoneEvent,
)

from chatkit_lab import MirrorModel

from .test_page import CHAT, open_chat, send, wait_idle

AT_BOTTOM = "() => { const l = document.querySelector('.ckl-log'); return l.scrollHeight - l.scrollTop - l.clientHeight < 24; }"


def test_the_composer_grows_with_its_text_up_to_a_maximum(page, make_lab, harness):
    open_chat(page, harness(make_lab()))
    box = page.locator(f"{CHAT} .ckl-input")
    one_line = box.evaluate("e => e.offsetHeight")
    box.fill("\n".join(f"line {n}" for n in range(4)))
    four_lines = box.evaluate("e => e.offsetHeight")
    box.fill("\n".join(f"line {n}" for n in range(40)))
    assert one_line < four_lines < 200
    assert box.evaluate("e => e.offsetHeight") <= 202 and box.evaluate("e => e.scrollHeight > e.clientHeight")
    box.fill("")
    assert box.evaluate("e => e.offsetHeight") == one_line


def test_a_busy_kernel_shows_waiting_and_loses_nothing(page, make_lab, harness):
    open_chat(page, harness(make_lab()), "?ack_delay=1500")
    send(page, "while a cell runs")
    page.get_by_text("Waiting for the kernel: it is running a cell.").wait_for()
    page.wait_for_function("() => (document.querySelector('.ckl-assistant')?.textContent || '').includes('while a cell runs')")
    assert page.get_by_text("Waiting for the kernel").count() == 0


def test_a_kernel_that_does_not_answer_says_so_and_keeps_the_message(page, make_lab, harness):
    page.goto(f"{harness(make_lab())}/?no_kernel=1&ack_timeout=1")
    box = page.locator(f"{CHAT} .ckl-input")
    box.wait_for()
    box.fill("keep me")
    box.press("Enter")
    page.locator(".ckl-error", has_text="The kernel has not answered for 1 s").wait_for()
    assert "restarted" not in page.locator(".ckl-app").inner_text()  # it does not know that
    page.wait_for_function("() => document.querySelector('.ckl-input').value === 'keep me'")


def test_a_restarted_kernel_says_so_and_keeps_the_message(page, make_lab, harness):
    page.goto(f"{harness(make_lab())}/?comm_gone=1")
    box = page.locator(f"{CHAT} .ckl-input")
    box.wait_for()
    box.fill("keep me too")
    box.press("Enter")
    page.locator("[data-testid='kernel-status']", has_text="The kernel restarted or shut down: run the cell").wait_for()
    page.wait_for_function("() => document.querySelector('.ckl-input').value === 'keep me too'")
    assert page.locator(".ckl-error").count() == 0  # said once, in the banner


def test_a_later_chat_learns_the_components_failure_at_once(page, make_lab, harness):
    url = harness(make_lab())
    page.goto(f"{url}/?ui=auto&chatkit_url=http://127.0.0.1:9/chatkit.js&timeout=20")
    page.locator(f"{CHAT} .ckl-input").first.wait_for()
    page.evaluate("window.renderAnother()")  # a second chat in the same tab, after the failure
    second = page.locator("#host2 [data-testid='builtin-badge']")
    second.wait_for(timeout=5000)  # without the remembered failure it would wait out the 20 s
    assert "could not be loaded" in second.get_attribute("title")


def test_reading_earlier_text_is_not_interrupted_by_a_streaming_reply(page, make_lab, harness):
    lab = make_lab(model=MirrorModel(delay=0.01))
    thread_id = lab.send_sync("m0").thread_id
    for n in range(1, 8):
        lab.send_sync(f"m{n}", thread_id)
    open_chat(page, harness(lab), f"?thread={thread_id}")
    page.wait_for_function("() => document.querySelectorAll('.ckl-user').length === 8")
    page.wait_for_function(AT_BOTTOM)  # a loaded thread opens at its end
    send(page, "/words 800")
    page.wait_for_function("() => (document.querySelectorAll('.ckl-assistant')[8]?.textContent || '').includes('w20')")
    page.wait_for_function(AT_BOTTOM)  # following the reply while at the bottom
    page.locator(".ckl-log").evaluate("l => { l.scrollTop = 100; l.dispatchEvent(new Event('scroll')); }")
    before = len(page.locator(".ckl-assistant").nth(8).inner_text())
    page.wait_for_function(f"() => document.querySelectorAll('.ckl-assistant')[8].textContent.length > {before + 200}")
    assert page.locator(".ckl-log").evaluate("l => l.scrollTop") == 100  # the reader stays put
    page.get_by_role("button", name="New messages").click()
    page.wait_for_function(AT_BOTTOM)
    assert page.get_by_role("button", name="New messages").count() == 0
    wait_idle(page)
    page.wait_for_function(AT_BOTTOM)


def test_showing_earlier_messages_keeps_what_the_reader_sees(page, make_lab, harness):
    lab = make_lab()
    thread_id = lab.send_sync("m0").thread_id
    for n in range(1, 40):
        lab.send_sync(f"m{n}", thread_id)
    open_chat(page, harness(lab), f"?thread={thread_id}")
    page.wait_for_function("() => document.querySelectorAll('.ckl-user').length === 25")
    page.locator(".ckl-log").evaluate("l => { l.scrollTop = 0; l.dispatchEvent(new Event('scroll')); }")
    top = "() => { const m = [...document.querySelectorAll('.ckl-user')].find(e => e.textContent === 'm15'); return m.getBoundingClientRect().top; }"
    before = page.evaluate(top)
    page.get_by_role("button", name="Show earlier messages").click()
    page.wait_for_function("() => document.querySelectorAll('.ckl-user').length === 40")
    assert abs(page.evaluate(top) - before) <= 2


@function_tool
async def ask_size(ctx: RunContextWrapper[AgentContext]) -> str:
    """Ask which size the user wants."""
    thread = ctx.context.thread
    await ctx.context.stream(ThreadItemDoneEvent(item=StructuredInputItem(
        id=ctx.context.store.generate_item_id("message", thread, ctx.context.request_context), thread_id=thread.id, created_at=thread.created_at,
        inputs=[StructuredInputMultipleChoice(id="size", question="Which size?", options=[StructuredInputMultipleChoiceOption(value=v) for v in "SML"]),
                StructuredInputFreeform(id="note", question="Anything else?")],
    )))
    return "asked"


@function_tool
async def highlight(ctx: RunContextWrapper[AgentContext], cell: int) -> str:
    """Highlight a cell in the notebook."""
    await ctx.context.stream(ClientEffectEvent(name="highlight", data={"cell": cell}))
    return "highlighted"


def test_a_structured_input_is_answered_in_the_chat_and_the_agent_sees_the_answer(page, make_lab, harness):
    lab = make_lab(agent=Agent(name="Shop", tools=[ask_size], model=MirrorModel()))
    open_chat(page, harness(lab))
    send(page, "call ask_size")
    form = page.locator("form.ckl-questions")
    form.wait_for()
    wait_idle(page)
    assert form.locator("legend").all_inner_texts() == ["Which size?", "Anything else?"]
    submit = form.get_by_role("button", name="Submit")
    assert submit.is_disabled()
    form.get_by_role("radio", name="M").click()
    form.get_by_role("radio", name="L").click()  # one choice: L replaces M
    assert form.get_by_role("radio", name="M").get_attribute("aria-checked") == "false"
    form.get_by_label("Anything else?").fill("gift wrap")
    submit.click()
    page.locator(".ckl-questions[data-status='answered']").wait_for()
    wait_idle(page)
    deadline = time.monotonic() + 10  # the model's input (written behind the stream) has the answers
    while lab.sql("SELECT count(*) AS n FROM input_items WHERE item LIKE '%Which size?: L%gift wrap%'").n[0] == 0:
        assert time.monotonic() < deadline, "the model never received the answers"
        time.sleep(0.1)
    answered = page.locator(".ckl-questions[data-status='answered']")
    assert answered.locator(".ckl-answer").all_inner_texts() == ["L", "gift wrap"]
    data = lab.sql("SELECT data FROM items WHERE type = 'structured_input'").data[0]
    assert '"status":"answered"' in data and '"values":["L"]' in data
    page.goto(page.url + f"?thread={lab.threads_df().thread_id[0]}")  # reloaded: answered, not pending
    page.locator(".ckl-questions[data-status='answered']").wait_for()
    assert page.locator("form.ckl-questions").count() == 0


def test_client_effects_reach_javascript_handlers_and_a_dom_event(page, make_lab, harness):
    lab = make_lab(agent=Agent(name="Nb", tools=[highlight], model=MirrorModel()))
    open_chat(page, harness(lab))
    send(page, 'call highlight {"cell": 7}')
    page.wait_for_function("() => window.effects.length === 1")
    wait_idle(page)
    assert page.evaluate("window.effects") == [{"cell": 7}]
    assert page.evaluate("window.effectEvents") == [{"name": "highlight", "data": {"cell": 7}}]
    assert page.evaluate("window.sent.filter(m => m.kind === 'client_effect').length") == 0  # no Python handler registered


def test_a_button_click_updates_one_component_of_its_widget_live(page, make_lab, harness):
    from chatkit.actions import ActionConfig
    from chatkit.types import ThreadItemUpdatedEvent, WidgetComponentUpdated, WidgetItem
    from chatkit.widgets import Button, Card, Text, Title

    lab = make_lab()

    @lab.on_action("show")
    async def show(thread, action, sender, context):
        card = Card(id="card", children=[Title(id="title", value="Order 42"), Text(id="status", value="waiting"),
                                         Button(id="ship", label="Ship", onClickAction=ActionConfig(type="ship"))])
        yield ThreadItemDoneEvent(item=WidgetItem(id="w_order", thread_id=thread.id, created_at=thread.created_at, widget=card))

    @lab.on_action("ship")
    async def ship(thread, action, sender, context):
        yield ThreadItemUpdatedEvent(item_id=sender.id, update=WidgetComponentUpdated(component_id="status", component=Text(id="status", value="shipped")))

    thread_id = lab.send_sync("my order").thread_id
    lab.request_sync({"type": "threads.custom_action", "params": {"thread_id": thread_id, "action": {"type": "show"}}})
    open_chat(page, harness(lab), f"?thread={thread_id}")
    card = page.locator(".ckl-w-card")
    card.wait_for()
    assert card.inner_text().split("\n")[:2] == ["Order 42", "waiting"]
    card.get_by_role("button", name="Ship").click()
    page.wait_for_function("() => document.querySelector('.ckl-w-card').textContent.includes('shipped')")
    assert card.inner_text().split("\n")[:2] == ["Order 42", "shipped"]  # the title is untouched


def test_thinking_then_a_stopped_reply_is_marked_and_counted(page, make_lab, harness):
    lab = make_lab(model=MirrorModel(delay=0.02))
    open_chat(page, harness(lab))
    # "Thinking" shows only between Send and the first token, which may be a few ms: an
    # observer set up before Send records that it was shown, however briefly.
    page.evaluate("""() => { window.sawThinking = false;
        new MutationObserver(() => { if (document.querySelector('.ckl-thinking[role=status]')) window.sawThinking = true; })
            .observe(document.body, {childList: true, subtree: true}); }""")
    send(page, "/words 3000")
    page.wait_for_function("() => window.sawThinking")
    page.wait_for_function("() => (document.querySelector('.ckl-assistant')?.textContent || '').includes('w30')")
    assert page.get_by_role("status", name="Thinking").count() == 0
    page.get_by_role("button", name="Stop").click()
    wait_idle(page)
    assert page.locator(".ckl-assistant .ckl-stopped").inner_text() == "Stopped"
    shown = page.locator(".ckl-assistant .ckl-md").inner_text().strip()
    deadline = time.monotonic() + 10
    while (turns := lab.sql("SELECT status, output_tokens FROM turns")).empty or turns.status[0] != "cancelled":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    saved = lab.sql("SELECT text FROM items WHERE type = 'assistant_message'").text[0]
    # (The harness's "kernel" is HTTP: a cancel cuts its connection, so the last bytes in
    # flight may be lost here; the real comm tunnel shows exactly what was saved, tested in
    # JupyterLab.)
    assert saved.startswith(shown.rsplit(" ", 1)[0])
    assert turns.output_tokens[0] >= len(saved) // 4  # the cut-short reply is counted


CODE_REPLY = """Here:

```python
def f(x):
    # square it
    return x * x
```

| name | count |
|:-----|------:|
| a    |     1 |

> a quoted line

Inline $x^2$ and display:

$$\\int_0^1 x\\,dx$$
"""


def test_code_blocks_tables_quotes_and_math(page, make_lab, harness):
    from agents.testing import ScriptedModel, assistant_message

    lab = make_lab(model=ScriptedModel([[assistant_message(CODE_REPLY, item_id="r")]]))
    open_chat(page, harness(lab))
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    send(page, "show me")
    page.locator(".ckl-code").wait_for()
    wait_idle(page)
    code = page.locator(".ckl-code")
    assert code.locator(".ckl-code-lang").inner_text() == "python"
    assert code.locator("pre").evaluate("e => getComputedStyle(e).whiteSpace") == "pre"  # indentation never wraps
    assert code.get_by_role("button", name="Insert as a cell below").count() == 0  # not in a notebook here
    code.get_by_role("button", name="Copy code").click()
    page.wait_for_function("() => !!document.querySelector('.ckl-code [aria-label=Copied]')")
    assert page.evaluate("navigator.clipboard.readText()") == "def f(x):\n    # square it\n    return x * x"
    cells = page.locator(".ckl-md td")
    assert [c.evaluate("e => getComputedStyle(e).textAlign") for c in cells.all()] == ["left", "right"]
    assert page.locator(".ckl-md blockquote").evaluate("e => getComputedStyle(e).borderLeftWidth") == "3px"
    assert page.locator(".ckl-md math").count() == 2
    assert page.locator(".ckl-md .katex-block math[display=block]").count() == 1
    assert page.locator(".ckl-md p math msup").count() == 1  # x^2, as MathML
    assert "$" not in page.locator(".ckl-md").inner_text()


def test_icons_are_svg_with_names_and_regenerate_replaces_the_last_reply(page, make_lab, harness):
    lab = make_lab()
    open_chat(page, harness(lab))
    send(page, "first")
    wait_idle(page)
    page.locator(".ckl-feedback").wait_for()
    for name in ("Threads", "Good answer", "Bad answer", "Regenerate this reply"):
        button = page.get_by_role("button", name=name)
        assert button.locator("svg").count() == 1 and button.get_attribute("title") == name
    assert not any(ch in page.locator(".ckl-app").inner_text() for ch in "👍👎⑂☰✕🗑✎")  # no emoji glyphs
    first_id = lab.sql("SELECT item_id FROM items WHERE type = 'assistant_message'").item_id[0]
    page.get_by_role("button", name="Regenerate this reply").click()
    deadline = time.monotonic() + 10
    while (ids := lab.sql("SELECT item_id FROM items WHERE type = 'assistant_message'").item_id.tolist()) in ([first_id], []):  # (deleted, then saved)
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert len(ids) == 1 and ids[0] != first_id  # replaced, not added
    wait_idle(page)
    assert page.locator(".ckl-assistant").count() == 1 and page.locator(".ckl-user").count() == 1


def test_starter_prompts_timestamps_duplicate_titles_and_a_spoken_reply(page, make_lab, harness):
    import json

    lab = make_lab()
    for _ in range(2):
        lab.send_sync("same title", new_thread=True)
    prompts = json.dumps([{"label": "Say hello", "prompt": "hello from a prompt"}, {"label": "Weather", "prompt": "call get_weather Oslo"}])
    open_chat(page, harness(lab), f"?prompts={prompts}")
    assert "Pick one" in page.locator(".ckl-empty").inner_text()
    assert page.locator(".ckl-log").get_attribute("aria-live") == "off"  # deltas are not read out
    page.get_by_role("button", name="Say hello").click()
    page.wait_for_function("() => (document.querySelector('.ckl-assistant')?.textContent || '').includes('hello from a prompt')")
    wait_idle(page)
    page.wait_for_function("() => document.querySelector('[data-testid=announce]').textContent.startsWith('Assistant replied:')")
    assert "hello from a prompt" in page.get_by_test_id("announce").inner_text()
    stamp = page.locator(".ckl-user").get_attribute("title")
    assert page.evaluate("s => !isNaN(Date.parse(s)) || /\\d{1,2}:\\d{2}/.test(s)", stamp)
    page.get_by_role("button", name="Threads").click()
    page.locator(".ckl-thread-open").nth(2).wait_for()
    same = page.locator(".ckl-thread-open", has_text="same title")
    assert same.count() == 2 and same.locator(".ckl-thread-when").count() == 2  # told apart by when they started
    assert page.locator(".ckl-thread-open", has_text="hello from a prompt").locator(".ckl-thread-when").count() == 0


def test_a_rating_takes_a_comment_comes_back_on_reload_and_can_be_taken_back(page, make_lab, harness):
    lab = make_lab()
    url = harness(lab)
    open_chat(page, url)
    send(page, "rate this")
    wait_idle(page)
    page.get_by_role("button", name="Bad answer").click()
    comment = page.get_by_label("Why? (optional)")
    comment.fill("too vague")
    comment.press("Enter")
    deadline = time.monotonic() + 10
    while lab.feedback_df().empty or lab.feedback_df().comment[0] is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert lab.feedback_df()[["kind", "comment"]].values.tolist() == [["negative", "too vague"]]
    thread_id = lab.threads_df().thread_id[0]
    open_chat(page, url, f"?thread={thread_id}")  # a reload: the rating shows again
    bad = page.get_by_role("button", name="Bad answer")
    page.wait_for_function("() => document.querySelector('[aria-label=\"Bad answer\"]')?.getAttribute('aria-pressed') === 'true'")
    assert page.locator(".ckl-rating-comment").inner_text() == "“too vague”"
    bad.click()  # pressed again: taken back
    page.wait_for_function("() => document.querySelector('[aria-label=\"Bad answer\"]').getAttribute('aria-pressed') !== 'true'")
    deadline = time.monotonic() + 10
    while not lab.feedback_df().empty:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_file_attached_in_the_composer_is_uploaded_and_sent_with_the_message(page, make_lab, harness, tmp_path):
    lab = make_lab()
    open_chat(page, harness(lab))
    notes = tmp_path / "notes.txt"
    notes.write_text("quarterly numbers: 42")
    page.get_by_test_id("file-picker").set_input_files(str(notes))
    page.locator(".ckl-pending .ckl-chip[data-state='ready']").wait_for()
    assert page.locator(".ckl-pending .ckl-chip").inner_text().startswith("notes.txt")
    send(page, "what is in the file?")
    page.locator(".ckl-user .ckl-chip", has_text="notes.txt").wait_for()
    wait_idle(page)
    assert page.locator(".ckl-pending").count() == 0  # sent: the composer is empty again
    stored = lab.sql("SELECT name, bytes FROM attachments")
    assert stored.name.tolist() == ["notes.txt"] and bytes(stored.bytes[0]) == b"quarterly numbers: 42"
    deadline = time.monotonic() + 10  # the model received the file's text
    while lab.sql("SELECT count(*) AS n FROM input_items WHERE item LIKE '%quarterly numbers: 42%'").n[0] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
