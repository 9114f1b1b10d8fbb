// The thread drawer: open, rename and delete threads without prompt()/confirm() (sandboxed
// outputs such as VS Code's block them). Esc closes it, focus moves in and back out, and
// threads with the same title show when each was started.
import { html } from "htm/preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { IconButton } from "./icons.js";

const started = (iso) => (iso ? new Date(iso).toLocaleString([], { dateStyle: "medium", timeStyle: "short" }) : "");

function RenameField({ thread, onDone, client }) {
  const [title, setTitle] = useState(thread.title || "");
  const save = () => {
    const value = title.trim();
    if (value && value !== thread.title) client.rename(thread.id, value);
    onDone();
  };
  return html`<input class="ckl-rename" aria-label=${`New title for ${thread.title || "Untitled"}`} value=${title} ref=${(el) => el?.focus()}
    onInput=${(e) => setTitle(e.currentTarget.value)} onBlur=${save}
    data-lm-suppress-shortcuts="true" onKeyDown=${(e) => { e.stopPropagation(); if (e.key === "Enter") save(); if (e.key === "Escape") onDone(); }} />`;
}

export function ThreadList({ state, client, onClose }) {
  const [renaming, setRenaming] = useState(null);
  const [deleting, setDeleting] = useState(null);
  const nav = useRef(null);
  // Focus stays in the drawer (on a thread) when it opens and after a rename or delete.
  const refocus = () => setTimeout(() => nav.current?.querySelector(".ckl-thread-open, button")?.focus());
  useEffect(refocus, []);
  const counts = new Map();
  for (const t of state.threads) counts.set(t.title || "Untitled", (counts.get(t.title || "Untitled") || 0) + 1);
  const onKeyDown = (e) => {
    e.stopPropagation(); // the notebook's shortcuts stay out of the drawer
    if (e.key === "Escape" && !renaming && !deleting) onClose();
    else if (e.key === "Escape") { setRenaming(null); setDeleting(null); refocus(); }
  };
  return html`<nav class="ckl-threads" aria-label="Threads" ref=${nav} onKeyDown=${onKeyDown}>
    <div class="ckl-threads-head"><strong>Threads</strong><${IconButton} icon="close" label="Close threads" onClick=${onClose} /></div>
    <ul>${state.threads.map((t) => {
      const title = t.title || "Untitled";
      if (deleting === t.id) {
        return html`<li key=${t.id} class="ckl-confirm" role="alertdialog" aria-label=${`Delete ${title}?`}>
          <span>Delete “${title}”?</span>
          <button type="button" class="ckl-danger-button" ref=${(el) => el?.focus()} onClick=${() => { client.remove(t.id); setDeleting(null); refocus(); }}>Delete</button>
          <button type="button" class="ckl-secondary" onClick=${() => { setDeleting(null); refocus(); }}>Cancel</button>
        </li>`;
      }
      return html`<li key=${t.id} aria-current=${t.id === state.threadId}>
        ${renaming === t.id
          ? html`<${RenameField} thread=${t} client=${client} onDone=${() => { setRenaming(null); refocus(); }} />`
          : html`<button type="button" class="ckl-thread-open" onClick=${() => { client.loadThread(t.id); onClose(); }}>
              <span class="ckl-thread-title">${title}</span>
              ${counts.get(title) > 1 && html`<span class="ckl-thread-when">${started(t.created_at)}</span>`}
            </button>`}
        <${IconButton} icon="edit" label=${`Rename ${title}`} onClick=${() => setRenaming(t.id)} />
        <${IconButton} icon="delete" label=${`Delete ${title}`} onClick=${() => setDeleting(t.id)} />
      </li>`;
    })}</ul>
  </nav>`;
}
