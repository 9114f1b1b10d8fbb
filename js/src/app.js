// The built-in renderer: a ChatKit-protocol client (requests through any fetch) and its view.
import { html } from "htm/preact";
import { useEffect, useLayoutEffect, useMemo, useReducer, useRef, useState } from "preact/hooks";
import { renderMarkdown } from "./markdown.js";
import { initialState, reduce } from "./reducer.js";
import { KERNEL_GONE, readEvents } from "./tunnel.js";
import { setAllowedImageDomains, imageAllowed } from "./images.js";
import { BlockedImage, WidgetNode } from "./widgets.js";

const PAGE = 50;
const NEAR_BOTTOM_PX = 24;

export function createClient(fetchFn, dispatch, getState, { url = "/chatkit", clientTool = null, onFork = null, onEffect = () => {} } = {}) {
  let controller = null;
  const headers = { "Content-Type": "application/json" };

  async function json(body) {
    const res = await fetchFn(url, { method: "POST", body: JSON.stringify(body), headers });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(data?.error?.message || `The server answered HTTP ${res.status}.`);
    return data;
  }

  // Resolves to whether the server took the request (sent at least one event): a message it
  // never took goes back into the composer.
  async function stream(body) {
    controller = new AbortController();
    dispatch({ type: "stream.start" });
    let pendingTool = null;
    let accepted = false;
    try {
      const res = await fetchFn(url, { method: "POST", body: JSON.stringify(body), headers, signal: controller.signal });
      if (!(res.headers.get("content-type") || "").startsWith("text/event-stream")) {
        const data = await res.json().catch(() => ({}));
        throw new Error(data?.error?.message || `The server answered HTTP ${res.status}.`);
      }
      await readEvents(res, (event) => {
        accepted = true;
        if (event.type === "client_effect") onEffect(event.name, event.data || {});
        dispatch({ type: "event", event });
        if (event.type === "thread.item.done" && event.item.type === "client_tool_call" && event.item.status === "pending") pendingTool = event.item;
      });
    } catch (err) {
      if (err.name !== "AbortError") dispatch({ type: "error", message: err.message });
    } finally {
      controller = null;
      dispatch({ type: "stream.end" });
    }
    if (pendingTool) await runClientTool(pendingTool);
    return accepted;
  }

  async function runClientTool(item) {
    let result;
    try {
      if (!clientTool) throw new Error(`no client tool handler for ${item.name}`);
      result = await clientTool(item.name, item.arguments);
    } catch (err) {
      result = { error: String(err?.message || err) };
    }
    await stream({ type: "threads.add_client_tool_output", params: { thread_id: item.thread_id, result } });
  }

  const guard = (fn) => async (...args) => {
    try {
      return await fn(...args);
    } catch (err) {
      dispatch({ type: "error", message: err.message });
    }
  };

  return {
    stream,
    send(text) {
      const input = { content: [{ type: "input_text", text }], attachments: [], inference_options: {} };
      const threadId = getState().threadId;
      return stream(threadId ? { type: "threads.add_user_message", params: { thread_id: threadId, input } } : { type: "threads.create", params: { input } });
    },
    stop: () => controller?.abort(),
    answer(itemId, input) { // a structured input item's questions: {status, answers: {id: {values}}}
      return stream({ type: "threads.add_structured_input", params: { thread_id: getState().threadId, item_id: itemId, input } });
    },
    loadThread: guard(async (id) => {
      const thread = await json({ type: "threads.get_by_id", params: { thread_id: id } });
      const page = await json({ type: "items.list", params: { thread_id: id, limit: PAGE, order: "desc" } });
      dispatch({ type: "thread.loaded", thread, page });
    }),
    loadOlder: guard(async () => {
      const { threadId, olderCursor } = getState();
      const page = await json({ type: "items.list", params: { thread_id: threadId, limit: PAGE, order: "desc", after: olderCursor } });
      dispatch({ type: "items.older", page });
    }),
    listThreads: guard(async () => dispatch({ type: "threads.listed", page: await json({ type: "threads.list", params: { limit: 50, order: "desc" } }) })),
    rename: guard(async (id, title) => {
      await json({ type: "threads.update", params: { thread_id: id, title } });
      dispatch({ type: "thread.renamed", id, title });
    }),
    remove: guard(async (id) => {
      await json({ type: "threads.delete", params: { thread_id: id } });
      dispatch({ type: "thread.deleted", id });
    }),
    feedback: guard(async (itemId, kind) => json({ type: "items.feedback", params: { thread_id: getState().threadId, item_ids: [itemId], kind } })),
    retry() {
      const { items, threadId } = getState();
      const last = [...items].reverse().find((i) => i.type === "user_message");
      if (!last) return;
      dispatch({ type: "retry", itemId: last.id });
      return stream({ type: "threads.retry_after_item", params: { thread_id: threadId, item_id: last.id } });
    },
    // "Fork from here" needs the host (the notebook kernel): ChatKit's protocol has no fork.
    fork: onFork && ((itemId) => onFork(getState().threadId, itemId)),
    action(itemId, action) {
      return stream({ type: "threads.custom_action", params: { thread_id: getState().threadId, item_id: itemId, action: { type: action.type, payload: action.payload } } });
    },
  };
}

function UserMessage({ item }) {
  const text = item.content.map((p) => (p.type === "input_tag" ? `@${p.text}` : p.text)).join("");
  return html`<div class="ckl-msg ckl-user" role="article" aria-label="You">
    ${item.quoted_text && html`<blockquote class="ckl-quote">${item.quoted_text}</blockquote>`}
    <div class="ckl-bubble">${text}</div>
    ${item.attachments?.length ? html`<div class="ckl-chips">${item.attachments.map((a) => html`<span class="ckl-chip">${a.name}</span>`)}</div>` : null}
  </div>`;
}

function Sources({ annotations }) {
  const seen = new Map();
  for (const a of annotations) {
    const s = a.source || {};
    const key = s.url || s.filename || s.id || s.title;
    if (key && !seen.has(key)) seen.set(key, s);
  }
  if (!seen.size) return null;
  return html`<div class="ckl-sources"><span class="ckl-sources-label">Sources</span><ol>
    ${[...seen.values()].map((s) => html`<li>${/^https?:/.test(s.url || "") ? html`<a href=${s.url} target="_blank" rel="noopener noreferrer">${s.title || s.url}</a>` : s.title || s.filename}</li>`)}
  </ol></div>`;
}

function AssistantMessage({ item, done, client }) {
  const text = item.content.map((p) => p.text).join("");
  const markup = useMemo(() => renderMarkdown(text), [text]);
  const [rated, setRated] = useState(null);
  const rate = (kind) => {
    setRated(kind);
    client.feedback(item.id, kind);
  };
  return html`<div class="ckl-msg ckl-assistant" role="article" aria-label="Assistant">
    <div class="ckl-md" dangerouslySetInnerHTML=${{ __html: markup }} />
    <${Sources} annotations=${item.content.flatMap((p) => p.annotations || [])} />
    ${done && html`<div class="ckl-feedback">
      <button type="button" class="ckl-icon-button" aria-label="Good answer" aria-pressed=${rated === "positive"} onClick=${() => rate("positive")}>👍</button>
      <button type="button" class="ckl-icon-button" aria-label="Bad answer" aria-pressed=${rated === "negative"} onClick=${() => rate("negative")}>👎</button>
      ${client.fork && html`<button type="button" class="ckl-icon-button" aria-label="Fork from here" title="Fork from here: a new thread with the conversation up to this reply" onClick=${() => client.fork(item.id)}>⑂</button>`}
    </div>`}
  </div>`;
}

const INDICATOR = { loading: "◌", complete: "✓", none: "•" };

function TaskRow({ task }) {
  const body = task.content || (task.queries || []).join(", ");
  return html`<li class="ckl-task" data-status=${task.status_indicator}>
    <span class="ckl-task-mark" aria-hidden="true">${INDICATOR[task.status_indicator] || "•"}</span>
    <span class="ckl-task-title">${task.title || (task.type === "thought" ? "Thought" : task.type)}</span>
    ${body && html`<div class="ckl-task-body">${body}</div>`}
  </li>`;
}

function Workflow({ item }) {
  const wf = item.workflow;
  const summary = wf.summary?.title || (wf.summary?.duration != null ? `Worked for ${wf.summary.duration} s` : `${wf.tasks.length} step${wf.tasks.length === 1 ? "" : "s"}`);
  return html`<details class="ckl-workflow" open=${wf.expanded || !wf.summary}>
    <summary>${summary}</summary>
    <ul>${wf.tasks.map((t, i) => html`<${TaskRow} key=${i} task=${t} />`)}</ul>
  </details>`;
}

// ChatKit's in-chat questions (structured_input): choices and/or free text, answered or skipped
// with threads.add_structured_input; once answered they show what was chosen.
function StructuredInput({ item, client, busy }) {
  const [chosen, setChosen] = useState({});
  const [typed, setTyped] = useState({});
  if (item.status !== "pending") {
    return html`<div class="ckl-msg ckl-questions" role="group" aria-label="Questions" data-status=${item.status}>
      ${item.inputs.map((q) => html`<div class="ckl-question" key=${q.id}><div class="ckl-question-text">${q.question}</div>
        <div class="ckl-answer">${q.answer && !q.answer.skipped ? q.answer.values.join(", ") : "Skipped"}</div></div>`)}
    </div>`;
  }
  const valuesOf = (q) => [...(chosen[q.id] || []), ...((typed[q.id] || "").trim() ? [typed[q.id].trim()] : [])];
  const toggle = (q, value) => {
    const now = chosen[q.id] || [];
    const next = now.includes(value) ? now.filter((v) => v !== value) : q.multiple ? [...now, value] : [value];
    setChosen({ ...chosen, [q.id]: next });
  };
  const answered = item.inputs.some((q) => valuesOf(q).length);
  const submit = (status) => client.answer(item.id, {
    status, answers: status === "skipped" ? {} : Object.fromEntries(item.inputs.map((q) => [q.id, valuesOf(q).length ? { values: valuesOf(q) } : { skipped: true }])),
  });
  return html`<form class="ckl-msg ckl-questions" aria-label="Questions" onSubmit=${(e) => { e.preventDefault(); if (answered) submit("answered"); }}>
    ${item.inputs.map((q) => html`<fieldset class="ckl-question" key=${q.id}>
      <legend class="ckl-question-text">${q.question}</legend>
      ${q.description && html`<div class="ckl-question-help">${q.description}</div>`}
      ${q.type === "multiple_choice" && html`<div class="ckl-choices" role=${q.multiple ? "group" : "radiogroup"}>
        ${q.options.map((o) => html`<button type="button" class="ckl-choice" role=${q.multiple ? "checkbox" : "radio"}
          aria-checked=${(chosen[q.id] || []).includes(o.value)} onClick=${() => toggle(q, o.value)}>${o.value}</button>`)}
      </div>`}
      <input class="ckl-question-input" type="text" aria-label=${q.type === "multiple_choice" ? `Other answer: ${q.question}` : q.question}
        placeholder=${q.type === "multiple_choice" ? "Other…" : "Your answer"} value=${typed[q.id] || ""}
        onKeyDown=${(e) => e.stopPropagation()} onInput=${(e) => setTyped({ ...typed, [q.id]: e.currentTarget.value })} />
    </fieldset>`)}
    <div class="ckl-question-actions">
      <button type="button" class="ckl-secondary" disabled=${busy} onClick=${() => submit("skipped")}>Skip</button>
      <button type="submit" class="ckl-send" disabled=${busy || !answered}>Submit</button>
    </div>
  </form>`;
}

function Item({ item, done, client, busy }) {
  switch (item.type) {
    case "user_message":
      return html`<${UserMessage} item=${item} />`;
    case "assistant_message":
      return html`<${AssistantMessage} item=${item} done=${done} client=${client} />`;
    case "workflow":
      return html`<${Workflow} item=${item} />`;
    case "task":
      return html`<ul class="ckl-workflow"><${TaskRow} task=${item.task} /></ul>`;
    case "widget":
      return html`<div class="ckl-msg ckl-widget"><${WidgetNode} node=${item.widget} ctx=${{ action: (a) => client.action(item.id, a) }} /></div>`;
    case "structured_input":
      return html`<${StructuredInput} item=${item} client=${client} busy=${busy} />`;
    case "generated_image":
      if (!item.image) return html`<div class="ckl-progress">Generating an image…</div>`;
      return imageAllowed(item.image.url) ? html`<img class="ckl-image" src=${item.image.url} alt="Generated image" />` : html`<${BlockedImage} src=${item.image.url} alt="Generated image" />`;
    default:
      return null; // client tool calls and hidden items are not shown
  }
}

function ThreadList({ state, client, onClose }) {
  return html`<nav class="ckl-threads" aria-label="Threads">
    <div class="ckl-threads-head"><strong>Threads</strong>
      <button type="button" class="ckl-icon-button" aria-label="Close threads" onClick=${onClose}>✕</button></div>
    <ul>${state.threads.map((t) => html`<li key=${t.id} aria-current=${t.id === state.threadId}>
      <button type="button" class="ckl-thread-open" onClick=${() => { client.loadThread(t.id); onClose(); }}>${t.title || "Untitled"}</button>
      <button type="button" class="ckl-icon-button" aria-label=${`Rename ${t.title || "thread"}`} onClick=${() => { const title = prompt("New title", t.title || ""); if (title) client.rename(t.id, title); }}>✎</button>
      <button type="button" class="ckl-icon-button" aria-label=${`Delete ${t.title || "thread"}`} onClick=${() => confirm("Delete this thread?") && client.remove(t.id)}>🗑</button>
    </li>`)}</ul>
  </nav>`;
}

const COMPOSER_MAX_PX = 200;

function Composer({ state, client, placeholder, onSent }) {
  const [text, setText] = useState("");
  const box = useRef(null);
  const status = state.thread?.status?.type || "active";
  const blocked = status !== "active";
  useLayoutEffect(() => { // grow with the text, up to a maximum, then scroll
    const el = box.current;
    if (!el) return;
    el.style.height = "auto";
    el.style.height = `${Math.min(el.scrollHeight + el.offsetHeight - el.clientHeight, COMPOSER_MAX_PX)}px`;
  }, [text]);
  const send = async () => {
    const value = text.trim();
    if (!value || state.streaming || blocked) return;
    setText("");
    onSent();
    const accepted = await client.send(value);
    if (!accepted) setText((now) => now || value); // never taken: the draft comes back
  };
  if (blocked) return html`<div class="ckl-closed" role="status">This thread is ${status}${state.thread.status.reason ? `: ${state.thread.status.reason}` : ""}.</div>`;
  // Key events stay here (as in ipywidgets' text boxes): Shift+Enter is a newline, not "run cell".
  return html`<form class="ckl-composer" onSubmit=${(e) => { e.preventDefault(); send(); }}>
    <textarea class="ckl-input" rows="1" ref=${box} aria-label="Message" placeholder=${placeholder || "Message the assistant"} value=${text}
      onInput=${(e) => setText(e.currentTarget.value)}
      onKeyDown=${(e) => { e.stopPropagation(); if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); } }}
      onKeyUp=${(e) => e.stopPropagation()} onKeyPress=${(e) => e.stopPropagation()} />
    ${state.streaming && state.allowCancel
      ? html`<button type="button" class="ckl-stop" aria-label="Stop" onClick=${client.stop}>■ Stop</button>`
      : html`<button type="submit" class="ckl-send" aria-label="Send" disabled=${state.streaming || !text.trim()}>Send</button>`}
  </form>`;
}

export function App({ fetch, url = "/chatkit", options = {}, banner = null, warning = null, kernelStatus = "ready", initialThreadId = null, onThreadChange = () => {}, clientTool = null, onFork = null, onEffect = undefined, expose = () => {} }) {
  setAllowedImageDomains(options.allowedImageDomains ?? options.allowed_image_domains);
  const [state, dispatch] = useReducer(reduce, initialState);
  const stateRef = useRef(state);
  stateRef.current = state;
  const client = useMemo(() => createClient(fetch, dispatch, () => stateRef.current, { clientTool, url, onFork, onEffect }), [fetch, url]);
  const [showThreads, setShowThreads] = useState(false);
  const log = useRef(null);
  // Follow new text only while the reader is at the bottom; otherwise offer a button. Older
  // items prepended above keep what the reader sees in place.
  const stick = useRef(true);
  const anchor = useRef(null); // {bottom: distance from the bottom, first: the first item's id}
  const [unseen, setUnseen] = useState(false);
  const toBottom = () => {
    stick.current = true;
    setUnseen(false);
    if (log.current) log.current.scrollTop = log.current.scrollHeight;
  };
  const onScroll = () => {
    const el = log.current;
    stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < NEAR_BOTTOM_PX;
    if (stick.current) setUnseen(false);
  };
  const loadOlder = () => {
    const el = log.current;
    anchor.current = { bottom: el.scrollHeight - el.scrollTop, first: stateRef.current.items[0]?.id };
    client.loadOlder();
  };

  useEffect(() => {
    client.listThreads();
    if (initialThreadId) client.loadThread(initialThreadId);
    expose({ client, dispatch, getState: () => stateRef.current });
  }, [client]);
  useEffect(() => onThreadChange(state.threadId), [state.threadId]);
  useLayoutEffect(toBottom, [state.threadId]);
  useLayoutEffect(() => {
    const el = log.current;
    if (!el) return;
    if (anchor.current && state.items[0]?.id !== anchor.current.first) {
      el.scrollTop = el.scrollHeight - anchor.current.bottom;
      anchor.current = null;
    } else if (stick.current) el.scrollTop = el.scrollHeight;
    else if (el.scrollHeight > el.clientHeight) setUnseen(true);
  }, [state.items, state.error, state.progress]);

  const lastAssistant = state.items.findLast ? state.items.findLast((i) => i.type === "assistant_message") : null;
  const gone = kernelStatus === "gone";
  return html`<div class="ckl-app">
    <header class="ckl-header">
      <button type="button" class="ckl-icon-button" aria-label="Threads" aria-expanded=${showThreads} onClick=${() => { setShowThreads(!showThreads); client.listThreads(); }}>☰</button>
      <span class="ckl-title">${state.thread?.title || options.title || "New chat"}</span>
      <button type="button" class="ckl-new" onClick=${() => dispatch({ type: "thread.new" })}>New chat</button>
    </header>
    ${banner && html`<div class="ckl-banner" role="status">${banner}</div>`}
    ${warning && html`<div class="ckl-banner ckl-danger" role="alert" data-testid="warning">${warning}</div>`}
    ${kernelStatus === "queued" && html`<div class="ckl-banner" role="status" data-testid="kernel-status">Waiting for the kernel: it is running a cell.</div>`}
    ${gone && html`<div class="ckl-banner ckl-danger" role="alert" data-testid="kernel-status">${KERNEL_GONE}</div>`}
    ${showThreads && html`<${ThreadList} state=${state} client=${client} onClose=${() => setShowThreads(false)} />`}
    <div class="ckl-log-wrap">
      <div class="ckl-log" role="log" aria-live="polite" ref=${log} onScroll=${onScroll}>
        ${state.hasOlder && html`<button type="button" class="ckl-older" onClick=${loadOlder}>Show earlier messages</button>`}
        ${!state.items.length && html`<div class="ckl-empty">${options.greeting || "Ask anything."}</div>`}
        ${state.items.map((item) => html`<${Item} key=${item.id} item=${item} client=${client} busy=${state.streaming} done=${!state.streaming || item !== lastAssistant} />`)}
        ${state.progress && html`<div class="ckl-progress" role="status">${state.progress.text}</div>`}
        ${state.notices.map((n, i) => html`<div class="ckl-notice" data-level=${n.level} role="status">
          ${n.title && html`<strong>${n.title} </strong>`}<span dangerouslySetInnerHTML=${{ __html: renderMarkdown(n.message) }} />
          <button type="button" class="ckl-icon-button" aria-label="Dismiss" onClick=${() => dispatch({ type: "notice.dismiss", index: i })}>✕</button></div>`)}
        ${state.error && !(gone && state.error.message === KERNEL_GONE) && html`<div class="ckl-error" role="alert"><span>${state.error.message}</span>
          ${state.error.allowRetry && html`<button type="button" class="ckl-retry" onClick=${client.retry}>Retry</button>`}</div>`}
      </div>
      ${unseen && html`<button type="button" class="ckl-unseen" onClick=${toBottom}>New messages ↓</button>`}
    </div>
    <${Composer} state=${state} client=${client} placeholder=${options.placeholder} onSent=${toBottom} />
  </div>`;
}
