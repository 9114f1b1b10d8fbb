// The built-in renderer's view: header, log, composer. Requests go through the client.
import { html } from "htm/preact";
import { useEffect, useLayoutEffect, useMemo, useReducer, useRef, useState } from "preact/hooks";
import { createClient } from "./client.js";
import { Icon, IconButton } from "./icons.js";
import { setAllowedImageDomains } from "./images.js";
import { Item } from "./messages.js";
import { renderMarkdown } from "./markdown.js";
import { initialState, reduce } from "./reducer.js";
import { ThreadList } from "./threads.js";
import { KERNEL_GONE } from "./tunnel.js";

export { createClient };

const NEAR_BOTTOM_PX = 24;
const ANNOUNCE_CHARS = 400;

const COMPOSER_MAX_PX = 200;

// Files to send with the next message: uploaded as soon as they are picked (ChatKit's
// two-phase attachments), shown as chips that can be removed. composer.attachments.enabled:
// false (ChatKit's option) hides the button.
function useAttachments(client) {
  const [files, setFiles] = useState([]); // {key, name, id?, error?}
  const add = (list) => {
    for (const file of list) {
      const key = `${file.name}-${Math.random().toString(36).slice(2, 8)}`;
      setFiles((now) => [...now, { key, name: file.name }]);
      client.attach(file).then(
        (a) => setFiles((now) => now.map((f) => (f.key === key ? { ...f, id: a.id } : f))),
        (err) => setFiles((now) => now.map((f) => (f.key === key ? { ...f, error: err.message } : f))),
      );
    }
  };
  const remove = (key) => setFiles((now) => {
    const gone = now.find((f) => f.key === key);
    if (gone?.id) client.detach(gone.id);
    return now.filter((f) => f.key !== key);
  });
  return { files, add, remove, clear: () => setFiles([]), ready: files.every((f) => f.id || f.error) };
}

function Composer({ state, client, placeholder, onSent, attachments = true }) {
  const [text, setText] = useState("");
  const box = useRef(null);
  const picker = useRef(null);
  const files = useAttachments(client);
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
    if (!value || state.streaming || blocked || !files.ready) return;
    const ids = files.files.filter((f) => f.id).map((f) => f.id);
    setText("");
    files.clear();
    onSent();
    const accepted = await client.send(value, undefined, ids);
    if (!accepted) setText((now) => now || value); // never taken: the draft comes back
  };
  if (blocked) return html`<div class="ckl-closed" role="status">This thread is ${status}${state.thread.status.reason ? `: ${state.thread.status.reason}` : ""}.</div>`;
  // Key events stay here: Shift+Enter is a newline, not "run cell". JupyterLab reads shortcuts
  // as keydown bubbles (so stopping it is enough, as ipywidgets' text boxes do); Notebook 7 reads
  // them on the way down, and skips any under data-lm-suppress-shortcuts.
  return html`<form class="ckl-composer" onSubmit=${(e) => { e.preventDefault(); send(); }}>
    ${files.files.length ? html`<div class="ckl-chips ckl-pending">${files.files.map((f) => html`<span class="ckl-chip" data-state=${f.error ? "error" : f.id ? "ready" : "uploading"} title=${f.error || (f.id ? f.name : "Uploading…")}>
      ${f.name}${f.error ? " (failed)" : f.id ? "" : "…"}<${IconButton} icon="close" label=${`Remove ${f.name}`} onClick=${() => files.remove(f.key)} /></span>`)}</div>` : null}
    ${attachments && html`<input type="file" multiple hidden ref=${picker} data-testid="file-picker" onChange=${(e) => { files.add([...e.currentTarget.files]); e.currentTarget.value = ""; }} />
      <${IconButton} icon="attach" label="Attach files" onClick=${() => picker.current.click()} />`}
    <textarea class="ckl-input" rows="1" ref=${box} aria-label="Message" placeholder=${placeholder || "Message the assistant"} value=${text}
      onInput=${(e) => setText(e.currentTarget.value)}
      data-lm-suppress-shortcuts="true" onKeyDown=${(e) => { e.stopPropagation(); if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); } }}
      onKeyUp=${(e) => e.stopPropagation()} onKeyPress=${(e) => e.stopPropagation()} />
    ${state.streaming && state.allowCancel
      ? html`<button type="button" class="ckl-stop" aria-label=${state.stopping ? "Stopping" : "Stop"} disabled=${state.stopping} onClick=${client.stop}><${Icon} name="stop" /> ${state.stopping ? "Stopping…" : "Stop"}</button>`
      : html`<button type="submit" class="ckl-send" aria-label="Send" disabled=${state.streaming || !text.trim()}>Send</button>`}
  </form>`;
}

// Starter prompts: ChatKit's startScreen.prompts [{label, prompt}], shown on an empty chat.
function StartScreen({ options, onPick }) {
  const start = options.startScreen || {};
  return html`<div class="ckl-empty">
    <div>${start.greeting || options.greeting || "Ask anything."}</div>
    ${start.prompts?.length ? html`<div class="ckl-prompts">${start.prompts.map((p) => html`<button type="button" class="ckl-prompt" onClick=${() => onPick(p.prompt || p.label)}>${p.label || p.prompt}</button>`)}</div>` : null}
  </div>`;
}

// A finished reply, for screen readers: announced once, not delta by delta.
function announcement(state) {
  const reply = state.items.findLast((i) => i.type === "assistant_message");
  if (!reply) return "";
  const text = reply.content.map((p) => p.text).join("");
  return `Assistant replied: ${text.length > ANNOUNCE_CHARS ? `${text.slice(0, ANNOUNCE_CHARS)}…` : text}`;
}

export function App({ fetch, url = "/chatkit", options = {}, builtinReason = null, warning = null, kernelStatus = "ready", initialThreadId = null, onThreadChange = () => {}, clientTool = null, onFork = null, onEffect = undefined, host = {}, expose = () => {} }) {
  setAllowedImageDomains(options.allowedImageDomains ?? options.allowed_image_domains);
  const [state, dispatch] = useReducer(reduce, initialState);
  const stateRef = useRef(state);
  stateRef.current = state;
  const client = useMemo(() => createClient(fetch, dispatch, () => stateRef.current, { clientTool, url, onFork, onEffect }), [fetch, url]);
  const [showThreads, setShowThreads] = useState(false);
  const menu = useRef(null);
  const closeThreads = () => { setShowThreads(false); menu.current?.focus(); };
  const [announced, setAnnounced] = useState("");
  const wasStreaming = useRef(false);
  useEffect(() => {
    if (wasStreaming.current && !state.streaming) setAnnounced(announcement(state));
    wasStreaming.current = state.streaming;
  }, [state.streaming]);
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
      <button type="button" class="ckl-icon-button" aria-label="Threads" title="Threads" aria-expanded=${showThreads} ref=${menu}
        onClick=${() => { if (showThreads) closeThreads(); else { setShowThreads(true); client.listThreads(); } }}><${Icon} name="menu" /></button>
      <span class="ckl-title">${state.thread?.title || options.title || "New chat"}</span>
      ${builtinReason && html`<span class="ckl-badge" tabindex="0" data-testid="builtin-badge" title=${`The built-in renderer: ${builtinReason}`} aria-label=${`Built-in renderer: ${builtinReason}`}>built-in</span>`}
      <button type="button" class="ckl-new" onClick=${() => dispatch({ type: "thread.new" })}>New chat</button>
    </header>
    ${warning && html`<div class="ckl-banner ckl-danger" role="alert" data-testid="warning">${warning}</div>`}
    ${kernelStatus === "queued" && html`<div class="ckl-banner" role="status" data-testid="kernel-status">Waiting for the kernel: it is running a cell.</div>`}
    ${gone && html`<div class="ckl-banner ckl-danger" role="alert" data-testid="kernel-status">${KERNEL_GONE}</div>`}
    ${showThreads && html`<${ThreadList} state=${state} client=${client} onClose=${closeThreads} />`}
    <div class="ckl-log-wrap">
      <div class="ckl-log" role="log" aria-live="off" ref=${log} onScroll=${onScroll}>
        ${state.hasOlder && html`<button type="button" class="ckl-older" onClick=${loadOlder}>Show earlier messages</button>`}
        ${!state.items.length && html`<${StartScreen} options=${options} onPick=${(text) => { toBottom(); client.send(text); }} />`}
        ${state.items.map((item) => html`<${Item} key=${item.id} item=${item} client=${client} busy=${state.streaming} host=${host}
          done=${!state.streaming || item !== lastAssistant} last=${item === lastAssistant && item === state.items.at(-1)}
          stopped=${state.stopped.includes(item.id)} rating=${state.feedback[item.id]} />`)}
        ${state.awaiting && html`<div class="ckl-thinking" role="status" aria-label="Thinking">Thinking<span class="ckl-dots" aria-hidden="true"><span>.</span><span>.</span><span>.</span></span></div>`}
        ${state.progress && html`<div class="ckl-progress" role="status">${state.progress.text}</div>`}
        ${state.notices.map((n, i) => html`<div class="ckl-notice" data-level=${n.level} role="status">
          ${n.title && html`<strong>${n.title} </strong>`}<span dangerouslySetInnerHTML=${{ __html: renderMarkdown(n.message) }} />
          <${IconButton} icon="close" label="Dismiss" onClick=${() => dispatch({ type: "notice.dismiss", index: i })} /></div>`)}
        ${state.error && !(gone && state.error.message === KERNEL_GONE) && html`<div class="ckl-error" role="alert"><span>${state.error.message}</span>
          ${state.error.allowRetry && html`<button type="button" class="ckl-retry" onClick=${client.retry}>Retry</button>`}</div>`}
      </div>
      ${unseen && html`<button type="button" class="ckl-unseen" onClick=${toBottom}>New messages <${Icon} name="arrow-down" /></button>`}
    </div>
    <div class="ckl-sr" aria-live="polite" data-testid="announce">${announced}</div>
    <${Composer} state=${state} client=${client} placeholder=${options.placeholder} onSent=${toBottom} attachments=${options.composer?.attachments?.enabled !== false} />
  </div>`;
}
