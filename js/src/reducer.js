// A pure reducer over ChatKit stream events and items: state in, action in, new state out.
// It mirrors chatkit.server's own bookkeeping (content-part padding, task updates, widget deltas).

export const initialState = {
  threadId: null,
  thread: null, // {id, title, status}
  items: [], // visible items, oldest first
  hasOlder: false,
  olderCursor: null,
  threads: [], // the history list
  streaming: false,
  awaiting: false, // sent, and nothing back yet: "Thinking…"
  stopping: false,
  stopped: [], // ids of replies cut short by Stop
  feedback: {}, // item id -> {kind, comment}: the user's ratings in this thread
  allowCancel: false,
  progress: null, // transient status line
  notices: [],
  error: null, // {message, allowRetry, itemId}
};
// (client_effect events are not state: the client hands them to their handlers as they arrive)

const HIDDEN = new Set(["hidden_context_item", "sdk_hidden_context", "end_of_turn"]);

const oldestFirst = (page) => page.data.slice().reverse().filter((i) => !HIDDEN.has(i.type));

function upsert(items, item) {
  if (HIDDEN.has(item.type)) return items;
  const at = items.findIndex((i) => i.id === item.id);
  if (at < 0) return [...items, item];
  const next = items.slice();
  next[at] = item;
  return next;
}

function applyAssistant(item, u) {
  const content = item.content.slice();
  while (content.length <= u.content_index) content.push({ type: "output_text", text: "", annotations: [] });
  const part = content[u.content_index];
  switch (u.type) {
    case "assistant_message.content_part.added":
    case "assistant_message.content_part.done":
      content[u.content_index] = u.content;
      break;
    case "assistant_message.content_part.text_delta":
      content[u.content_index] = { ...part, text: part.text + u.delta };
      break;
    case "assistant_message.content_part.annotation_added": {
      const annotations = (part.annotations || []).slice();
      annotations.splice(Math.min(u.annotation_index, annotations.length), 0, u.annotation);
      content[u.content_index] = { ...part, annotations };
      break;
    }
  }
  return { ...item, content };
}

function applyWidgetDelta(node, id, delta) {
  if (!node || typeof node !== "object") return node;
  if (node.id === id && typeof node.value === "string") return { ...node, value: node.value + delta };
  if (!Array.isArray(node.children)) return node;
  return { ...node, children: node.children.map((c) => applyWidgetDelta(c, id, delta)) };
}

function replaceComponent(node, id, component) {
  if (!node || typeof node !== "object") return node;
  if (node.id === id) return component;
  if (!Array.isArray(node.children)) return node;
  return { ...node, children: node.children.map((c) => replaceComponent(c, id, component)) };
}

function applyUpdate(item, u) {
  if (u.type.startsWith("assistant_message.")) return applyAssistant(item, u);
  if (u.type === "workflow.task.added" || u.type === "workflow.task.updated") {
    const tasks = item.workflow.tasks.slice();
    tasks[u.task_index] = u.task;
    return { ...item, workflow: { ...item.workflow, tasks } };
  }
  if (u.type === "widget.root.updated") return { ...item, widget: u.widget };
  if (u.type === "widget.component.updated") return { ...item, widget: replaceComponent(item.widget, u.component_id, u.component) };
  if (u.type === "widget.streaming_text.value_delta") return { ...item, widget: applyWidgetDelta(item.widget, u.component_id, u.delta) };
  if (u.type === "generated_image.updated") return { ...item, image: u.image, progress: u.progress };
  return item;
}

export function reduceEvent(state, e) {
  switch (e.type) {
    case "thread.created":
    case "thread.updated": {
      const thread = { id: e.thread.id, title: e.thread.title, status: e.thread.status, created_at: e.thread.created_at };
      const threads = state.threads.some((t) => t.id === thread.id)
        ? state.threads.map((t) => (t.id === thread.id ? { ...t, ...thread } : t))
        : [thread, ...state.threads];
      return { ...state, threadId: thread.id, thread, threads };
    }
    case "thread.item.added":
    case "thread.item.done":
    case "thread.item.replaced": {
      // "Thinking…" lasts until something of the answer shows: a step, a widget, or text.
      const empty = e.item.type === "assistant_message" && !e.item.content.some((p) => p.text);
      const answered = e.item.type !== "user_message" && e.type !== "thread.item.replaced" && !empty;
      return { ...state, items: upsert(state.items, e.item), progress: e.type === "thread.item.added" ? null : state.progress, awaiting: state.awaiting && !answered };
    }
    case "thread.item.updated":
      return {
        ...state, items: state.items.map((i) => (i.id === e.item_id ? applyUpdate(i, e.update) : i)),
        awaiting: state.awaiting && !(e.update.type.endsWith("text_delta") || e.update.type.startsWith("workflow.") || e.update.type.startsWith("widget.")),
      };
    case "thread.item.removed":
      return { ...state, items: state.items.filter((i) => i.id !== e.item_id) };
    case "stream_options":
      return { ...state, allowCancel: !!e.stream_options.allow_cancel };
    case "progress_update":
      return { ...state, progress: { text: e.text, icon: e.icon }, awaiting: false };
    case "notice":
      return { ...state, notices: [...state.notices, { level: e.level, title: e.title, message: e.message }] };
    case "error":
      return { ...state, error: { message: e.message || "The assistant could not answer.", allowRetry: !!e.allow_retry } };
    default:
      return state;
  }
}

export function reduce(state, action) {
  switch (action.type) {
    case "event":
      return reduceEvent(state, action.event);
    case "stream.start":
      return { ...state, streaming: true, awaiting: true, stopping: false, allowCancel: false, error: null, progress: null };
    case "stream.end":
      return { ...state, streaming: false, awaiting: false, stopping: false, allowCancel: false, progress: null };
    case "stream.stopping": { // the reply being written is the one Stop cuts short
      const reply = state.awaiting ? null : state.items.findLast((i) => i.type === "assistant_message");
      return { ...state, stopping: true, stopped: reply ? [...state.stopped, reply.id] : state.stopped };
    }
    case "thread.loaded": { // the thread, and its newest page of items (items.list, desc)
      const t = action.thread;
      return {
        ...state, threadId: t.id, thread: { id: t.id, title: t.title, status: t.status },
        items: oldestFirst(action.page), hasOlder: action.page.has_more, olderCursor: action.page.after,
        error: null, notices: [], progress: null, feedback: t.id === state.threadId ? state.feedback : {},
      };
    }
    case "items.older": // the next page back (items.list, desc, after the oldest shown)
      return { ...state, items: [...oldestFirst(action.page), ...state.items], hasOlder: action.page.has_more, olderCursor: action.page.after };
    case "threads.listed":
      return { ...state, threads: action.page.data.map((t) => ({ id: t.id, title: t.title, status: t.status, created_at: t.created_at })) };
    case "thread.new":
      return { ...state, threadId: null, thread: null, items: [], hasOlder: false, error: null, notices: [], progress: null, feedback: {} };
    case "thread.renamed":
      return {
        ...state,
        thread: state.thread && state.thread.id === action.id ? { ...state.thread, title: action.title } : state.thread,
        threads: state.threads.map((t) => (t.id === action.id ? { ...t, title: action.title } : t)),
      };
    case "thread.deleted": {
      const threads = state.threads.filter((t) => t.id !== action.id);
      return state.threadId === action.id ? { ...reduce(state, { type: "thread.new" }), threads } : { ...state, threads };
    }
    case "retry": // the server deletes what follows the user message without removal events
      return { ...state, items: state.items.slice(0, state.items.findIndex((i) => i.id === action.itemId) + 1), error: null };
    case "error":
      return { ...state, error: { message: action.message, allowRetry: false } };
    case "feedback.loaded":
      if (action.threadId !== state.threadId) return state;
      return { ...state, feedback: Object.fromEntries(action.ratings.map((r) => [r.item_id, { kind: r.kind, comment: r.comment }])) };
    case "feedback.set": {
      const feedback = { ...state.feedback };
      if (action.kind) feedback[action.itemId] = { kind: action.kind, comment: action.comment ?? feedback[action.itemId]?.comment ?? null };
      else delete feedback[action.itemId];
      return { ...state, feedback };
    }
    case "notice.dismiss":
      return { ...state, notices: state.notices.filter((_, i) => i !== action.index) };
    default:
      return state;
  }
}
