// anywidget entry. initialize does nothing slow (anywidget drops messages if it takes > 2 s);
// render draws at once, then tries the official component when asked and falls back to the
// built-in renderer, saying why.
import { h, render as preactRender } from "preact";
import { App } from "./app.js";
import { notebookPage, withContext } from "./context.js";
import { mountOfficial } from "./official.js";
import { createTunnel } from "./tunnel.js";

const HELLO_TIMEOUT_MS = 1500; // a busy kernel answers later; the chat then reloads as the user

// The built-in renderer outside Jupyter (the cookie proxy's page): plain fetch to `url`, with
// cookies, so the server side of the page adds the credentials.
export function mountStandalone(el, { url = "/api/chatkit", options = {} } = {}) {
  el.classList.add("ckl-root");
  const fetchFn = withContext((u, init) => fetch(u, { ...init, credentials: "same-origin" }), {
    page: () => ({ url: location.href, title: document.title }),
  });
  preactRender(h(App, { fetch: fetchFn, url, options }), el);
}

function setTrait(model, name, value) {
  if (model.get(name) === value) return;
  model.set(name, value);
  model.save_changes();
}

function pythonClientTools(model) {
  const waiting = new Map();
  let n = 0;
  model.on("msg:custom", (msg) => {
    if (msg?.kind !== "client_tool_result" || !waiting.has(msg.id)) return;
    const { resolve, reject } = waiting.get(msg.id);
    waiting.delete(msg.id);
    msg.error ? reject(new Error(msg.error)) : resolve(msg.result);
  });
  return (name, args) => new Promise((resolve, reject) => {
    const id = `tool-${++n}-${Math.random().toString(36).slice(2, 6)}`;
    waiting.set(id, { resolve, reject });
    model.send({ kind: "client_tool", id, name, arguments: args });
  });
}

// "Insert as a cell below" needs the notebook's document model, which JupyterLab's and
// Notebook 7's widget manager expose (its context); elsewhere (VS Code, Colab, a page) the
// button is not offered. The new cell goes below the cell whose output shows this widget.
function notebookInserter(model, modelId) {
  const notebook = model.widget_manager?.context?.model?.sharedModel;
  if (typeof notebook?.insertCell !== "function") return null;
  const VIEW = "application/vnd.jupyter.widget-view+json";
  return (code) => {
    const cells = notebook.cells;
    const at = cells.findIndex((c) => (c.getOutputs?.() || []).some((o) => o.data?.[VIEW]?.model_id === modelId()));
    notebook.insertCell(at < 0 ? cells.length : at + 1, { cell_type: "code", source: code });
  };
}

export default {
  initialize() {},

  async render({ model, el, signal }) {
    el.classList.add("ckl-root");
    el.dataset.testid = "chat";
    const container = document.createElement("div");
    el.appendChild(container);
    let props = { kernelStatus: "ready", builtinReason: null, warning: model.get("warning") || null };
    let api = null;
    let official = null;

    const tunnel = createTunnel(model, {
      onStatus: (s) => { props = { ...props, kernelStatus: s }; redraw(); },
      deadAfterMs: (model.get("ack_timeout") || 30) * 1000,
    });
    // The kernel hands the token over in a message (lab.login); switching users reloads the chat.
    let token = null;
    let greeted;
    const hello = new Promise((resolve) => { greeted = resolve; setTimeout(resolve, HELLO_TIMEOUT_MS); });
    let modelId = null; // this widget's id in the notebook's outputs (for "insert a cell below")
    const onAuth = (msg) => {
      if (msg?.kind === "welcome") modelId = msg.model_id;
      if (msg?.kind !== "auth") return;
      const changed = msg.token !== token;
      token = msg.token || null;
      greeted();
      if (!changed) return;
      if (api) { api.dispatch({ type: "thread.new" }); api.client.listThreads(); }
      if (official) official.setThreadId(null);
      setTrait(model, "thread_id", null);
    };
    model.on("msg:custom", onAuth);
    model.send({ kind: "hello" });
    const chatFetch = withContext(tunnel.fetch, {
      token: () => token,
      page: () => (model.get("share_page") === false ? null : notebookPage(el, { activeCell: !!model.get("share_active_cell") })),
    });
    // client_effect events: JavaScript handlers (globalThis.chatkitLab.effects) and Python ones.
    const deliverEffect = (name, data) => {
      try {
        globalThis.chatkitLab?.effects?.[name]?.(data);
      } catch (err) {
        console.warn(`chatkit-lab: the client effect handler ${name} failed`, err);
      }
      if ((model.get("python_client_effects") || []).includes(name)) model.send({ kind: "client_effect", name, data });
    };
    const onEffect = (name, data) => {
      el.dispatchEvent(new CustomEvent("chatkit.effect", { detail: { name, data }, bubbles: true })); // as the official element does
      deliverEffect(name, data);
    };
    const askPython = pythonClientTools(model);
    const host = { insertCell: notebookInserter(model, () => modelId) };
    const clientTool = async (name, args) => {
      const js = globalThis.chatkitLab?.clientTools?.[name];
      if (js) return js(args);
      if ((model.get("python_client_tools") || []).includes(name)) return askPython(name, args);
      throw new Error(`No client tool named ${name} is registered.`);
    };
    let mounted = false;
    let scheduled = false;
    // Frames can arrive while Preact is rendering (a synchronous transport): redraw afterwards.
    const redraw = () => {
      if (!mounted || scheduled) return;
      scheduled = true;
      queueMicrotask(() => { scheduled = false; draw(); });
    };
    // Forks are the kernel's (ChatKit's protocol has none). An edited message is sent again in
    // its fork once the fork is open; each fork request names what to send there, if anything.
    const editsToSend = new Map();
    let forks = 0;
    const onFork = (threadId, itemId, editedText = null) => {
      const request = `fork-${++forks}`;
      if (editedText != null) editsToSend.set(request, editedText);
      model.send({ kind: "fork", thread_id: threadId, item_id: itemId, before: editedText != null, request, token });
    };
    const draw = () => preactRender(h(App, {
      fetch: chatFetch, options: model.get("options") || {}, initialThreadId: model.get("thread_id"), clientTool, onFork, onEffect,
      onThreadChange: (id) => setTrait(model, "thread_id", id), expose: (a) => (api = a), host, ...props,
    }), container);
    const mountBuiltin = (why, builtinReason = null) => {
      props = { ...props, builtinReason };
      mounted = true;
      draw();
      setTrait(model, "status", `builtin: ${why}`);
    };

    model.on("change:warning", () => { props = { ...props, warning: model.get("warning") || null }; redraw(); });
    model.on("change:thread_id", () => {
      const id = model.get("thread_id");
      if (api && api.getState().threadId !== id) id ? api.client.loadThread(id) : api.dispatch({ type: "thread.new" });
      if (official && id) official.setThreadId(id);
    });
    // A turn made from a cell (lab.send): shown live if this chat shows its thread, or shows a
    // new chat and the turn made a new thread.
    model.on("msg:custom", (msg) => {
      if (msg?.kind !== "thread_events") return;
      const created = msg.events.find((e) => e.type === "thread.created");
      if (official) { // the element re-reads the thread when items were saved
        const shown = model.get("thread_id");
        if (created && !shown) {
          official.setThreadId(msg.thread_id);
          setTrait(model, "thread_id", msg.thread_id);
        } else if (msg.thread_id === shown && msg.events.some((e) => e.type === "thread.item.done" || e.type === "thread.item.replaced")) {
          official.fetchUpdates();
        }
        return;
      }
      if (!api) return;
      const state = api.getState();
      if (msg.thread_id === state.threadId || (created && !state.threadId)) for (const event of msg.events) api.dispatch({ type: "event", event });
      else if (created) api.client.listThreads();
    });
    model.on("msg:custom", (msg) => {
      if (msg?.kind !== "forked" || !api) return;
      const edited = editsToSend.get(msg.request);
      editsToSend.delete(msg.request);
      if (msg.error) return api.dispatch({ type: "error", message: msg.error });
      api.client.loadThread(msg.thread_id).then(() => edited != null && api.client.send(edited, msg.thread_id));
      api.client.listThreads();
    });

    container.innerHTML = '<div class="ckl-loading" role="status">Loading…</div>';
    await hello;
    container.innerHTML = "";
    const ui = model.get("ui");
    if (ui === "builtin") {
      mountBuiltin("ui='builtin'");
    } else {
      container.innerHTML = '<div class="ckl-loading" role="status">Loading ChatKit…</div>';
      try {
        official = await mountOfficial(container, {
          src: model.get("chatkit_url"), fetch: chatFetch, domainKey: model.get("domain_key"),
          options: model.get("options") || {}, threadId: model.get("thread_id"),
          onThreadChange: (id) => setTrait(model, "thread_id", id), timeoutMs: model.get("load_timeout") * 1000,
        });
        container.querySelector(".ckl-loading")?.remove();
        official.addEventListener("chatkit.effect", (e) => deliverEffect(e.detail?.name, e.detail?.data || {}));
        setTrait(model, "status", "chatkit: the official web component");
      } catch (err) {
        container.innerHTML = "";
        if (ui === "chatkit") {
          container.innerHTML = '<div class="ckl-banner ckl-danger" role="alert"></div>';
          container.firstChild.textContent = `ChatKit could not start: ${err.message}.`;
          setTrait(model, "status", `error: ${err.message}`);
        } else {
          mountBuiltin(`fallback (${err.message})`, `${err.message}.`);
        }
      }
    }

    const cleanup = () => {
      model.off("msg:custom", onAuth);
      tunnel.dispose();
      preactRender(null, container);
      container.remove();
    };
    signal?.addEventListener("abort", cleanup, { once: true });
    return cleanup;
  },
};
