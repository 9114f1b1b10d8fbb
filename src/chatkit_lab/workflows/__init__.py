"""Agent Builder workflows as code: a graph of typed nodes run in the notebook's chat.

    >>> from chatkit_lab.workflows import Workflow, StartNode, AgentNode, EndNode, chain
    >>> wf = Workflow(name="hello", nodes=[StartNode("start"), AgentNode("reply", instructions="Be brief."), EndNode("end")],
    ...               edges=chain("start", "reply", "end"))
    >>> result = wf.run_sync("hi")          # or: await wf.run("hi"), ChatLab(workflow=wf)
    >>> result.path
    ['start', 'reply', 'end']

Node types are Agent Builder's (``start``, ``agent``, ``guardrails``, ``if_else``, ``while``,
``user_approval``, ``set_state``, ``transform``, ``file_search``, ``mcp``, ``note``, ``end``);
conditions and assignments are CEL. A workflow saves to JSON and loads back exactly
(``wf.save(path)``, ``Workflow.load(path)``), and everything wrong with one is a
``WorkflowError`` when it loads.
"""

from . import templates
from .expressions import ExpressionError
from .graph import (
    NODE_TYPES,
    AgentNode,
    Edge,
    EndNode,
    FileSearchNode,
    GuardrailsNode,
    IfElseNode,
    MCPNode,
    NoteNode,
    SetStateNode,
    StartNode,
    StateVariable,
    TransformNode,
    UserApprovalNode,
    WhileNode,
    Workflow,
    WorkflowError,
    chain,
)
from .run import NodeRun, WorkflowResult

__all__ = [
    "NODE_TYPES", "AgentNode", "Edge", "EndNode", "ExpressionError", "FileSearchNode", "GuardrailsNode", "IfElseNode", "MCPNode", "NodeRun",
    "NoteNode", "SetStateNode", "StartNode", "StateVariable", "TransformNode", "UserApprovalNode", "WhileNode", "Workflow", "WorkflowError",
    "WorkflowResult", "chain", "templates",
]
