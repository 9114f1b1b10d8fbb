// A ChatKit-protocol client: each request through any fetch (the widget's tunnel, or plain fetch
// on a page), each streamed event into the reducer, client tools and effects to their handlers.
import { readEvents } from "./tunnel.js";

const PAGE = 50;
const RELOAD_AFTER_STOP_MS = 500; // a connection cut by Stop: re-read what the server saved

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
      // Plain fetch drops the rest of the stream on Stop: show the partial reply as it was saved.
      else if (getState().threadId) setTimeout(() => api.loadThread(getState().threadId), RELOAD_AFTER_STOP_MS);
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

  const api = {
    stream,
    // Two-phase attachments: create (the server answers where to upload), then upload the bytes.
    async attach(file) {
      const created = await json({ type: "attachments.create", params: { name: file.name, size: file.size, mime_type: file.type || "application/octet-stream" } });
      const target = created.upload_descriptor;
      if (target) {
        const res = await fetchFn(target.url, { method: target.method || "PUT", body: file, headers: target.headers || {} });
        const data = await res.json().catch(() => ({}));
        if (!res.ok) throw new Error(data?.error?.message || `The upload failed (HTTP ${res.status}).`);
      }
      return created;
    },
    detach: (id) => json({ type: "attachments.delete", params: { attachment_id: id } }).catch(() => {}),
    send(text, threadId = getState().threadId, attachments = []) {
      const input = { content: [{ type: "input_text", text }], attachments, inference_options: {} };
      return stream(threadId ? { type: "threads.add_user_message", params: { thread_id: threadId, input } } : { type: "threads.create", params: { input } });
    },
    // Stop asks the server to stop; the tunnel keeps the stream open until the server ends it,
    // so what is shown is what was saved.
    stop() {
      if (!controller) return;
      dispatch({ type: "stream.stopping" });
      controller.abort();
    },
    answer(itemId, input) { // a structured input item's questions: {status, answers: {id: {values}}}
      return stream({ type: "threads.add_structured_input", params: { thread_id: getState().threadId, item_id: itemId, input } });
    },
    loadThread: guard(async (id) => {
      const thread = await json({ type: "threads.get_by_id", params: { thread_id: id } });
      const page = await json({ type: "items.list", params: { thread_id: id, limit: PAGE, order: "desc" } });
      dispatch({ type: "thread.loaded", thread, page });
      // The user's ratings (chatkit-lab's own request; a plain ChatKit server has none).
      const rated = await json({ type: "lab.feedback.list", params: { thread_id: id } }).catch(() => null);
      if (rated) dispatch({ type: "feedback.loaded", threadId: id, ratings: rated.data });
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
    // A rating goes as ChatKit's items.feedback; taking it back (kind null) or adding a comment
    // needs lab.feedback.set.
    feedback: guard(async (itemId, kind, comment = null) => {
      const threadId = getState().threadId;
      dispatch({ type: "feedback.set", itemId, kind, comment });
      if (kind && comment == null) return json({ type: "items.feedback", params: { thread_id: threadId, item_ids: [itemId], kind } });
      return json({ type: "lab.feedback.set", params: { thread_id: threadId, item_id: itemId, kind, comment } });
    }),
    retry() {
      const { items, threadId } = getState();
      const last = [...items].reverse().find((i) => i.type === "user_message");
      if (!last) return;
      dispatch({ type: "retry", itemId: last.id });
      return stream({ type: "threads.retry_after_item", params: { thread_id: threadId, item_id: last.id } });
    },
    // "Fork from here" needs the host (the notebook kernel): ChatKit's protocol has no fork.
    fork: onFork && ((itemId) => onFork(getState().threadId, itemId)),
    // Edit a user message and send it again: a fork of what came before it, then the new text.
    edit: onFork && ((itemId, text) => onFork(getState().threadId, itemId, text)),
    action(itemId, action) {
      return stream({ type: "threads.custom_action", params: { thread_id: getState().threadId, item_id: itemId, action: { type: action.type, payload: action.payload } } });
    },
  };
  return api;
}
