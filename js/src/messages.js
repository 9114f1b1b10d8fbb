// The thread's items as the built-in renderer shows them: messages (with code toolbars,
// feedback, regenerate, fork), tool and workflow steps, widgets, questions and images.
import { html } from "htm/preact";
import { useLayoutEffect, useMemo, useRef, useState } from "preact/hooks";
import { IconButton, iconMarkup } from "./icons.js";
import { imageAllowed } from "./images.js";
import { renderInline, renderMarkdown } from "./markdown.js";
import { BlockedImage, WidgetNode } from "./widgets.js";

// ChatKit's datetimes are naive ISO strings; shown as the reader's local time on hover.
const when = (iso) => (iso ? new Date(iso).toLocaleString() : undefined);

function UserMessage({ item, client, busy }) {
  const text = item.content.map((p) => (p.type === "input_tag" ? `@${p.text}` : p.text)).join("");
  const [draft, setDraft] = useState(null); // editing: the new text
  if (draft != null) {
    const send = () => { if (draft.trim()) client.edit(item.id, draft.trim()); setDraft(null); };
    return html`<div class="ckl-msg ckl-user ckl-editing" role="group" aria-label="Edit your message">
      <textarea class="ckl-input" aria-label="Edited message" value=${draft} ref=${(el) => el?.focus()}
        onInput=${(e) => setDraft(e.currentTarget.value)}
        data-lm-suppress-shortcuts="true" onKeyDown=${(e) => { e.stopPropagation(); if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send(); } if (e.key === "Escape") setDraft(null); }} />
      <div class="ckl-question-actions">
        <button type="button" class="ckl-secondary" onClick=${() => setDraft(null)}>Cancel</button>
        <button type="button" class="ckl-send" onClick=${send} title="Sends it in a new thread (a fork), keeping this one as it was">Send</button>
      </div>
    </div>`;
  }
  return html`<div class="ckl-msg ckl-user" role="article" aria-label="You" title=${when(item.created_at)}>
    ${item.quoted_text && html`<blockquote class="ckl-quote">${item.quoted_text}</blockquote>`}
    <div class="ckl-bubble">${text}</div>
    ${item.attachments?.length ? html`<div class="ckl-chips">${item.attachments.map((a) => html`<span class="ckl-chip">${a.name}</span>`)}</div>` : null}
    ${client.edit && !busy && html`<div class="ckl-user-tools"><${IconButton} icon="edit" label="Edit and send again" onClick=${() => setDraft(text)} /></div>`}
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

// A toolbar on each code block of rendered markdown: its language, Copy, and (in a notebook)
// "Insert as a cell below". Added to the sanitized HTML's DOM, with our own markup only.
function addCodeBars(root, canInsert) {
  for (const pre of root.querySelectorAll("pre")) {
    if (pre.parentElement.classList.contains("ckl-code")) continue;
    const box = document.createElement("div");
    box.className = "ckl-code";
    const bar = document.createElement("div");
    bar.className = "ckl-code-bar";
    const lang = document.createElement("span");
    lang.className = "ckl-code-lang";
    lang.textContent = pre.dataset.lang || "text";
    bar.append(lang);
    const buttons = [["copy", "copy", "Copy code"], ...(canInsert ? [["insert", "insert", "Insert as a cell below"]] : [])];
    for (const [action, icon, label] of buttons) {
      const button = document.createElement("button");
      Object.assign(button, { type: "button", className: "ckl-icon-button", title: label, innerHTML: iconMarkup(icon) });
      button.dataset.codeAction = action;
      button.setAttribute("aria-label", label);
      bar.append(button);
    }
    pre.replaceWith(box);
    box.append(bar, pre);
  }
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch { // no clipboard API (an insecure origin, a sandboxed output): the old way
    const area = Object.assign(document.createElement("textarea"), { value: text });
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
}

// After a rating, an optional comment (Enter saves it, Esc skips it).
function FeedbackComment({ rating, onSave, onClose }) {
  const [text, setText] = useState(rating.comment || "");
  return html`<div class="ckl-comment">
    <input class="ckl-question-input" aria-label="Why? (optional)" placeholder="Why? (optional)" value=${text} ref=${(el) => el?.focus()}
      onInput=${(e) => setText(e.currentTarget.value)}
      data-lm-suppress-shortcuts="true" onKeyDown=${(e) => { e.stopPropagation(); if (e.key === "Enter") onSave(text.trim()); if (e.key === "Escape") onClose(); }} />
    <button type="button" class="ckl-secondary" onClick=${() => onSave(text.trim())}>Save</button>
  </div>`;
}

function AssistantMessage({ item, done, client, stopped, last, host, rating }) {
  const text = item.content.map((p) => p.text).join("");
  const markup = useMemo(() => renderMarkdown(text), [text]);
  const body = useRef(null);
  const [commenting, setCommenting] = useState(false);
  useLayoutEffect(() => body.current && addCodeBars(body.current, !!host.insertCell), [markup]);
  const rate = (kind) => { // the pressed thumb again takes the rating back
    const next = rating?.kind === kind ? null : kind;
    client.feedback(item.id, next);
    setCommenting(!!next);
  };
  const onCode = async (e) => {
    const button = e.target.closest("[data-code-action]");
    if (!button) return;
    const code = button.closest(".ckl-code").querySelector("pre").textContent.replace(/\n$/, "");
    if (button.dataset.codeAction === "insert") return host.insertCell(code);
    await copyText(code);
    button.innerHTML = iconMarkup("check");
    button.setAttribute("aria-label", "Copied");
    setTimeout(() => { button.innerHTML = iconMarkup("copy"); button.setAttribute("aria-label", "Copy code"); }, 1500);
  };
  return html`<div class="ckl-msg ckl-assistant" role="article" aria-label="Assistant" title=${when(item.created_at)}>
    <div class="ckl-md" ref=${body} onClick=${onCode} dangerouslySetInnerHTML=${{ __html: markup }} />
    <${Sources} annotations=${item.content.flatMap((p) => p.annotations || [])} />
    ${stopped && html`<div class="ckl-stopped" role="note">Stopped</div>`}
    ${done && html`<div class="ckl-feedback">
      <${IconButton} icon="thumbs-up" label="Good answer" pressed=${rating?.kind === "positive"} onClick=${() => rate("positive")} />
      <${IconButton} icon="thumbs-down" label="Bad answer" pressed=${rating?.kind === "negative"} onClick=${() => rate("negative")} />
      ${last && html`<${IconButton} icon="regenerate" label="Regenerate this reply" onClick=${client.retry} />`}
      ${client.fork && html`<${IconButton} icon="fork" label="Fork from here: a new thread with the conversation up to this reply" onClick=${() => client.fork(item.id)} />`}
      ${rating?.comment && !commenting && html`<span class="ckl-rating-comment" title="Your comment">“${rating.comment}”</span>`}
    </div>`}
    ${commenting && rating && html`<${FeedbackComment} rating=${rating}
      onSave=${(comment) => { if (comment) client.feedback(item.id, rating.kind, comment); setCommenting(false); }} onClose=${() => setCommenting(false)} />`}
  </div>`;
}

const INDICATOR = { loading: "◌", complete: "✓", none: "•" };

function TaskRow({ task }) {
  const body = task.content || (task.queries || []).join(", ");
  const title = task.title || (task.type === "thought" ? "Thought" : task.type);
  return html`<li class="ckl-task" data-status=${task.status_indicator}>
    <span class="ckl-task-mark" aria-hidden="true">${INDICATOR[task.status_indicator] || "•"}</span>
    <span class="ckl-task-title" dangerouslySetInnerHTML=${{ __html: renderInline(title) }} />
    ${body && html`<div class="ckl-task-body">${body}</div>`}
    ${task.sources?.length ? html`<ul class="ckl-task-sources" aria-label="Sources">${task.sources.map((s, i) => html`<li key=${i}
      class="ckl-task-source" title=${s.description || ""}>${s.title || s.filename || s.url}</li>`)}</ul>` : null}
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
        data-lm-suppress-shortcuts="true" onKeyDown=${(e) => e.stopPropagation()} onInput=${(e) => setTyped({ ...typed, [q.id]: e.currentTarget.value })} />
    </fieldset>`)}
    <div class="ckl-question-actions">
      <button type="button" class="ckl-secondary" disabled=${busy} onClick=${() => submit("skipped")}>Skip</button>
      <button type="submit" class="ckl-send" disabled=${busy || !answered}>Submit</button>
    </div>
  </form>`;
}

export function Item({ item, done, client, busy, stopped, last, host, rating }) {
  switch (item.type) {
    case "user_message":
      return html`<${UserMessage} item=${item} client=${client} busy=${busy} />`;
    case "assistant_message":
      return html`<${AssistantMessage} item=${item} done=${done} client=${client} stopped=${stopped} last=${last} host=${host} rating=${rating} />`;
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
