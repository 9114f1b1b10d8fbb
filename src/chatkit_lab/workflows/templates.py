"""Ready-made workflows: the seed report's two, and Agent Builder's stock patterns.

Each runs offline: the offline model's classifiers pick the label your message names
("my invoice is wrong, billing" routes to billing), so routing is deterministic. Model checks
(Hallucination Detection) need a provider; offline they say so in their verdict and let the
reply through.
"""

from __future__ import annotations

from collections.abc import Callable

from .graph import (
    AgentNode,
    Edge,
    EndNode,
    FileSearchNode,
    GuardrailsNode,
    IfElseNode,
    NoteNode,
    SetStateNode,
    StartNode,
    StateVariable,
    UserApprovalNode,
    WhileNode,
    Workflow,
    chain,
)

MODEL = "gpt-4.1-mini"


def classifier_schema(*labels: str) -> dict[str, object]:
    """The JSON Schema of a classifier's output: one of ``labels`` and a confidence."""
    return {
        "type": "object", "additionalProperties": False, "required": ["classification", "confidence"],
        "properties": {"classification": {"type": "string", "enum": list(labels)}, "confidence": {"type": "number"}},
    }


def _is(label: str) -> str:
    return f'input.output_parsed.classification == "{label}"'


HALLUCINATION = {"guardrails": [{"name": "Hallucination Detection", "config": {"model": MODEL, "confidence_threshold": 0.7, "knowledge_source": "vs_support_docs"}}]}


def _routed(name: str, description: str, guard: GuardrailsNode, classifier: str, specialists: dict[str, tuple[str, str]], stop: str) -> Workflow:
    """guard → classifier → if/else → one agent per label (the last is the else) → hallucination
    check → end; a tripped guard or check ends with ``stop``."""
    labels = list(specialists)
    agents = [AgentNode(f"{label}_agent", name=title, model=MODEL, instructions=text) for label, (title, text) in specialists.items()]
    return Workflow(
        name=name, description=description,
        nodes=[
            StartNode("start"), guard,
            AgentNode("classify", name="Classifier", model=MODEL, output_schema=classifier_schema(*labels), instructions=classifier),
            IfElseNode("route", name="Route", branches={label: _is(label) for label in labels[:-1]}), *agents,
            GuardrailsNode("grounded", name="Hallucination check", config=HALLUCINATION),
            EndNode("end"), EndNode("stopped", output=stop),
        ],
        edges=[
            *chain("start", guard.id), Edge(guard.id, "classify", "pass"), Edge(guard.id, "stopped", "fail"), *chain("classify", "route"),
            *[Edge("route", agent.id, label if i < len(labels) - 1 else "else") for i, (label, agent) in enumerate(zip(labels, agents, strict=True))],
            *[Edge(agent.id, "grounded") for agent in agents], Edge("grounded", "end", "pass"), Edge("grounded", "stopped", "fail"),
        ],
    )


def customer_support() -> Workflow:
    """PII guardrail → classifier (technical / billing / general, with confidence) → if/else →
    three specialists → hallucination check → end (the seed report's workflow)."""
    return _routed(
        "customer-support", "Masks PII, routes the request to a specialist, checks the answer.",
        GuardrailsNode("pii", name="Mask PII", config={"guardrails": [{"name": "Contains PII", "config": {"block": False}}]}),
        "Classify the customer's request as technical, billing or general, with your confidence from 0 to 1.",
        {"billing": ("Billing specialist", "You are a billing specialist. Help with invoices, charges and refunds; never ask for full card numbers."),
         "technical": ("Technical specialist", "You are a technical support engineer. Give numbered troubleshooting steps."),
         "general": ("General specialist", "You are a friendly support agent for general questions. Answer briefly.")},
        "I can't process that message: {{input.output_text}}",
    )


def homework_helper() -> Workflow:
    """Jailbreak guardrail → classifier (math / science / writing) → three tutors →
    hallucination check → end."""
    return _routed(
        "homework-helper", "Refuses jailbreaks, routes the question to a subject tutor, checks the answer.",
        GuardrailsNode("jailbreak", name="Jailbreak guardrail", config={"guardrails": [{"name": "Jailbreak", "config": {"model": MODEL, "confidence_threshold": 0.7}}]}),
        "Which subject is the student's question: math, science or writing?",
        {"math": ("Math tutor", "You are a patient math tutor. Show the steps, and let the student do the last one."),
         "science": ("Science tutor", "You are a science tutor. Explain with one everyday example."),
         "writing": ("Writing tutor", "You are a writing coach. Give two concrete suggestions; do not rewrite the essay.")},
        "I can only help with homework questions.",
    )


def customer_service() -> Workflow:
    """Agent Builder's customer service: a classifier routes returns (with the user's approval),
    cancellations (a retention offer) and questions."""
    return Workflow(
        name="customer-service", description="Returns need the customer's approval; cancellations get a retention offer.",
        state=[StateVariable("return_approved", "boolean", False)],
        nodes=[
            StartNode("start"),
            AgentNode("classify", name="Classifier", model=MODEL, output_schema=classifier_schema("return_item", "cancel_subscription", "get_information"),
                      instructions="Classify the request: return_item, cancel_subscription or get_information."),
            IfElseNode("route", name="Route", branches={"return": _is("return_item"), "cancel": _is("cancel_subscription")}),
            AgentNode("returns", name="Return agent", model=MODEL, show_in_chat=False,
                      instructions="Summarise the return in one sentence: what, and why."),
            UserApprovalNode("approve_return", name="Approve the return", message="Approve this return? {{input.output_text}}"),
            SetStateNode("approved", name="Record approval", assignments={"return_approved": "true"}),
            EndNode("return_done", output="Your return is approved; a label is on its way."),
            EndNode("return_declined", output="The return was not approved. Anything else I can do?"),
            AgentNode("retention", name="Retention agent", model=MODEL,
                      instructions="The customer wants to cancel. Acknowledge it and offer one month free to stay."),
            AgentNode("information", name="Information agent", model=MODEL, instructions="Answer the customer's question briefly."),
            EndNode("end"),
            NoteNode("about", text="Stock pattern from Agent Builder: classifier → if/else → approval for returns."),
        ],
        edges=[
            *chain("start", "classify", "route"), Edge("route", "returns", "return"), Edge("route", "retention", "cancel"),
            Edge("route", "information", "else"), *chain("returns", "approve_return"), Edge("approve_return", "approved", "approve"),
            Edge("approve_return", "return_declined", "reject"), *chain("approved", "return_done"), *chain("retention", "end"),
            *chain("information", "end"),
        ],
    )


def research_assistant(rounds: int = 3) -> Workflow:
    """Agent Builder's research pattern: a while loop over state gathers ``rounds`` notes on the
    topic, then a writer summarises them."""
    return Workflow(
        name="research-assistant", description="Loops a researcher over state, then writes a summary.",
        state=[StateVariable("topic", "string", ""), StateVariable("round", "number", 0), StateVariable("rounds", "number", rounds),
               StateVariable("notes", "list", [])],
        nodes=[
            StartNode("start"),
            SetStateNode("set_topic", name="Set topic", assignments={"topic": "workflow.input_as_text"}),
            WhileNode("loop", name="Research loop", condition="state.round < state.rounds", max_iterations=10),
            AgentNode("research", name="Researcher", model=MODEL, show_in_chat=False, include_history=False,
                      instructions="Round {{state.round + 1.0}} of research on: {{state.topic}}. Add one new fact."),
            SetStateNode("note", name="Keep the note", assignments={"notes": "state.notes + [input.output_text]", "round": "state.round + 1.0"}),
            AgentNode("write", name="Writer", model=MODEL, instructions="Write a short summary of these notes on {{state.topic}}: {{state.notes}}"),
            EndNode("end"),
        ],
        edges=[*chain("start", "set_topic", "loop"), Edge("loop", "research", "body"), *chain("research", "note", "loop"),
               Edge("loop", "write", "done"), *chain("write", "end")],
    )


def knowledge_base() -> Workflow:
    """Agent Builder's knowledge-base assistant: file search over the lab's documents, then an
    agent answers from the hits (add documents with ``lab.documents.add([...])``)."""
    return Workflow(
        name="knowledge-base", description="Searches the lab's documents and answers from what it finds.",
        nodes=[
            StartNode("start"),
            FileSearchNode("search", name="Search documents", max_results=3),
            AgentNode("answer", name="Answer", model=MODEL,
                      instructions="Answer the question using only these excerpts; say so if they do not cover it.\n\n{{input.output_text}}"),
            EndNode("end"),
        ],
        edges=chain("start", "search", "answer", "end"),
    )


TEMPLATES: dict[str, Callable[[], Workflow]] = {
    "customer-support": customer_support, "homework-helper": homework_helper, "customer-service": customer_service,
    "research-assistant": research_assistant, "knowledge-base": knowledge_base,
}
