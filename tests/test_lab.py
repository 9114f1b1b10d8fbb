"""ChatLab's own loop thread: where work runs, concurrency with the caller, clean shutdown."""

import re
import subprocess
import sys
import threading
import time

import duckdb
import pytest
from agents import function_tool

from chatkit_lab import ChatLabError, MirrorModel

from .conftest import run

ran_on = []


@function_tool
async def where_am_i() -> str:
    """Report the thread the tool runs on (async tools run on the agent's loop)."""
    ran_on.append(threading.current_thread().name)
    return threading.current_thread().name


def test_agent_runs_happen_on_the_labs_own_thread_when_awaited_from_another_loop(make_lab):
    lab = make_lab(tools=[where_am_i])
    ran_on.clear()

    async def cell():  # a notebook cell: another event loop, on another thread
        return await lab.send("call where_am_i")

    turn = run(cell())
    assert ran_on == ["chatkit-lab"]
    assert turn.text == "Tool `where_am_i` returned: chatkit-lab"


def test_the_labs_loop_is_uvloops_where_it_is_installed_and_asyncios_where_it_is_not(make_lab, monkeypatch):
    import asyncio

    from chatkit_lab._loop import new_loop

    lab = make_lab(warm=False)
    assert type(lab.runtime.loop.loop).__module__.startswith("uvloop")  # a dependency on Linux and macOS
    assert lab.send_sync("hello").text.startswith("**[mirror]**")
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as on Windows: the import fails
    plain = new_loop()
    try:
        assert isinstance(plain, asyncio.BaseEventLoop) and not type(plain).__module__.startswith("uvloop")
    finally:
        plain.close()


def test_a_reply_keeps_streaming_while_the_caller_blocks(make_lab):
    lab = make_lab(model=MirrorModel(delay=0.002))
    future = lab.runtime.loop.submit(lab.runtime.send("/words 300", None, "local"))
    started = time.monotonic()
    time.sleep(1.5)  # a blocking cell: the lab's loop is not the caller's
    assert future.done(), "the reply finished while the caller was blocked"
    assert future.result().text.endswith("w300")
    assert time.monotonic() - started >= 1.5


def test_sync_calls_from_the_labs_own_loop_are_refused_with_a_hint(make_lab):
    lab = make_lab()

    async def inside():
        with pytest.raises(ChatLabError, match="use the async one with await"):
            lab.send_sync("hi")
        return (await lab.send("hi")).text  # awaiting on the lab's loop works

    assert "you said" in lab.runtime.loop.call(inside())


def test_close_stops_the_loop_and_frees_the_file_for_another_process(make_lab, db_path):
    lab = make_lab()
    lab.send_sync("hello")
    lab.close()
    assert not lab.runtime.loop.running
    assert not any(t.name == "chatkit-lab" and t.is_alive() and t is lab.runtime.loop._thread for t in threading.enumerate())
    # Another process opens the file at once: no lock left behind.
    code = f"import duckdb; print(duckdb.connect({str(db_path)!r}).execute('select count(*) from items').fetchone()[0])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "2", out.stderr
    with pytest.raises(ChatLabError, match="closed"):
        lab.send_sync("again")


def test_the_file_is_released_when_idle(make_lab, db_path):
    lab = make_lab()
    lab.send_sync("hello")
    deadline = time.monotonic() + 5
    while lab.db.is_open and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not lab.db.is_open
    with duckdb.connect(str(db_path)) as con:  # what a second kernel would do
        assert con.execute("select count(*) from threads").fetchone()[0] == 1
    assert lab.send_sync("still works").error is None


def test_sql_and_dataframes(make_lab):
    lab = make_lab()
    turn = lab.send_sync("hello")
    assert lab.threads_df().columns.tolist()[:7] == ["thread_id", "user_id", "title", "status", "created_at", "updated_at", "items"]
    items = lab.items_df(turn.thread_id)
    assert items.item_id.tolist() == turn.item_ids and items.role.tolist() == ["user", "assistant"]
    assert lab.sql("SELECT count(*) AS n FROM items WHERE text ILIKE ?", ["%hello%"]).n[0] == 2
    other = lab.send_sync("mine", user_id="someone-else")
    assert other.thread_id not in lab.threads_df().thread_id.tolist()
    assert other.thread_id in lab.threads_df(all_users=True).thread_id.tolist()


def test_unknown_threads_are_a_sentence_not_a_traceback(make_lab):
    lab = make_lab()
    assert lab.send_sync("hello", "thr_nope").error == "Thread thr_nope not found"
    with pytest.raises(ChatLabError, match="^Thread thr_nope not found$"):
        lab.request_sync({"type": "threads.get_by_id", "params": {"thread_id": "thr_nope"}})


@pytest.mark.parametrize(("setting", "sentence"), [
    ({"tools": [print]}, "tools[0] is a builtin_function_or_method, not an Agents SDK tool: decorate print with @function_tool"),
    ({"tools": "where_am_i"}, "tools= is a list of Agents SDK tools, not str"),
    ({"model": 4}, "model= is a model name such as 'gpt-4.1-mini'"),
    ({"instructions": 5}, "instructions= is a string"),
    ({"history_limit": 0}, "history_limit= is how many stored items"),
    ({"history_limit": "5"}, "history_limit= is how many stored items"),  # every turn failed with a TypeError
    ({"mcp_servers": ["http://127.0.0.1:9/mcp"]}, "mcp_servers[0] is a str, not an MCP server"),
    ({"limits": {"rate": "5/second"}}, "limits= is a chatkit_lab.Limits"),
])
def test_a_wrong_setting_is_a_sentence_when_the_lab_is_made(make_lab, setting, sentence):
    # A plain function or a tool's name ran silently on the offline model and failed on a real one;
    # the rest were TypeErrors or AttributeErrors from inside the SDK.
    with pytest.raises(ChatLabError, match=re.escape(sentence)):
        make_lab(warm=False, **setting)


def test_replay_checks_its_tools_as_the_lab_does(make_lab):
    lab = make_lab(warm=False, tools=[where_am_i])
    thread = lab.send_sync("hi").thread_id
    with pytest.raises(ChatLabError, match=re.escape("tools[0] is a function, not an Agents SDK tool: decorate len_of with @function_tool")):
        lab.replay(thread, tools=[len_of])


def len_of(text: str) -> int:
    return len(text)


def test_the_warm_up_rehearses_offline_and_writes_nothing(make_lab):
    lab = make_lab()
    lab.warmed.result(30)
    counts = lab.sql("SELECT (SELECT count(*) FROM threads) + (SELECT count(*) FROM items) + (SELECT count(*) FROM turns) + (SELECT count(*) FROM spans) AS n")
    assert counts.n[0] == 0
    assert make_lab(db=":memory:", warm=False).warmed is None


def test_a_chat_imports_neither_pandas_nor_cel_and_the_first_frame_imports_pandas(tmp_path):
    # 0.3 s and 0.1 s of a cold start that a chat, with the default guardrails, does not need
    code = (
        "import sys\n"
        "from chatkit_lab import ChatLab, guardrails\n"
        f"lab = ChatLab({str(tmp_path / 'x.duckdb')!r}, guardrails=guardrails.DEFAULT_CONFIG)\n"
        "turn = lab.send_sync('hello, I am ada@example.com')\n"
        "lab.chat()\n"
        "print(turn.error, 'pandas' in sys.modules, 'cel' in sys.modules)\n"
        "print(len(lab.turns_df()), 'pandas' in sys.modules)\n"
        "lab.close()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split("\n")[:2] == ["None False False", "1 True"], done.stderr


def test_a_failing_provider_prints_no_traceback_where_no_logging_is_set_up(tmp_path):
    code = (
        "from chatkit_lab import ChatLab\n"
        f"lab = ChatLab({str(tmp_path / 'x.duckdb')!r}, model='gpt-4.1-mini', warm=False)\n"
        "print(lab.send_sync('hello').error)\n"
        "lab.close()\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("OPENAI_")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.stdout.startswith("No API key is set"), done.stderr
    assert "Traceback" not in done.stderr and done.stderr.strip() == ""  # the sentence is in the chat, not the cell


def test_a_task_left_pending_by_a_stopped_stream_is_not_reported_in_the_cell(caplog):
    import asyncio

    from chatkit_lab._loop import LoopThread

    loop = LoopThread("pending-test")

    async def report():
        running = asyncio.get_running_loop()
        pending = running.create_task(asyncio.sleep(60))
        # what asyncio says when such a task is collected (ChatKit's queue reader after Stop)
        running.call_exception_handler({"message": "Task was destroyed but it is pending!", "task": pending})
        running.call_exception_handler({"message": "a real failure", "exception": RuntimeError("boom")})
        pending.cancel()

    loop.call(report())
    loop.stop()
    errors = [r.getMessage() for r in caplog.records if r.name == "asyncio" and r.levelname == "ERROR"]
    assert errors == ["a real failure"]  # only the real failure is reported
