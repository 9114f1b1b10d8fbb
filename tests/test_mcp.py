"""MCP tool credentials against a real MCP server (a subprocess on 127.0.0.1) whose tool needs a
token: the seed's "token in the system prompt" pattern leaks it into the model input and the tool
arguments; server-side injection keeps it from the model. In both, the token reaches neither the
DuckDB file nor any export."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call

from chatkit_lab.auth import mcp_server

from .conftest import found_in_database, free_port

SERVER = Path(__file__).parent.parent / "notebooks" / "crm_mcp_server.py"
TOKEN = "crm-test-4b8e1d0c7a"


@pytest.fixture(scope="module")
def crm():
    proc = subprocess.Popen([sys.executable, str(SERVER), str(free_port())], stdout=subprocess.PIPE, text=True, env={"CRM_TOKEN": TOKEN, "PATH": ""})
    try:
        line = proc.stdout.readline()
        assert line.startswith("ready "), line
        yield line.split()[1]
    finally:
        proc.kill()
        proc.wait(10)


def exports(lab, tmp_path):
    """Everything an analyst would export: every table as CSV and Parquet."""
    files = []
    for table in ("threads", "items", "turns", "traces", "spans", "model_inputs"):
        df = lab.sql(f"SELECT * FROM {table}")
        files += [tmp_path / f"{table}.csv", tmp_path / f"{table}.parquet"]
        df.to_csv(files[-2])
        df.to_parquet(files[-1])
    return [f.name for f in files if TOKEN.encode() in f.read_bytes()]


def test_server_side_injection_keeps_the_token_from_the_model(make_lab, db_path, crm, tmp_path):
    lab = make_lab(mcp_servers=[mcp_server(crm, credential="crm_token", name="crm")])
    lab.secrets.set("crm_token", TOKEN, user_id="alice")
    ask = 'call lookup_orders {"customer": "acme"}'
    alice = lab.send_sync(ask, user_id="alice")
    assert alice.text == "Tool `lookup_orders` returned: acme: 2 open orders (#1001 anvils, #1002 rockets)"
    assert "unauthorized" in lab.send_sync(ask, user_id="bob").text  # bob has no token
    seen = lab.inspect(alice)
    assert seen.tools == ["mcp:crm"] and len(seen.calls) == 2
    assert TOKEN not in seen.text() and "REDACTED" not in seen.text()  # the model never saw it
    assert exports(lab, tmp_path) == []
    lab.close()
    assert found_in_database(db_path, TOKEN) == []
    assert found_in_database(db_path, "REDACTED") == []  # nothing needed redacting


def test_the_token_in_the_system_prompt_leaks_into_model_input_and_tool_arguments(make_lab, db_path, crm, tmp_path):
    def obey_the_prompt(call):  # what a real model does with "use token X"
        token = re.search(r"CRM token is (\S+)\.", call.system_instructions).group(1)
        return [function_call("lookup_orders", {"customer": "acme", "token": token}, call_id="call_1")]

    model = ScriptedModel([ModelStep.respond(obey_the_prompt), ModelStep(output=[assistant_message("acme has 2 open orders.")])])
    lab = make_lab(model=model, instructions=f"You look up orders. The CRM token is {TOKEN}.", mcp_servers=[mcp_server(crm, name="crm")])
    lab.secrets.watch(TOKEN, "crm_token")  # without this, the token would be written everywhere
    turn = lab.send_sync("orders of acme?")
    assert turn.text == "acme has 2 open orders."
    seen = lab.inspect(turn)
    assert "[REDACTED:crm_token]" in seen.instructions  # in the model input, every call
    tool_call = next(i for i in seen.calls[1].input if i.get("type") == "function_call")
    assert "[REDACTED:crm_token]" in tool_call["arguments"]  # and in the tool arguments
    spans = lab.sql("SELECT span_type FROM spans WHERE data LIKE '%REDACTED:crm_token%'").span_type.tolist()
    assert "function" in spans  # the tool call span (a real model's generation span holds the prompt too)
    assert exports(lab, tmp_path) == []
    lab.close()
    assert found_in_database(db_path, TOKEN) == []
