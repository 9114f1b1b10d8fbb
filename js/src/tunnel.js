// The widget tunnel, browser side: a fetch() that carries ChatKit requests over the widget's
// comm to the in-kernel server and turns the kernel's frames back into a streaming Response.
// Frames: ack, head {status, content_type}, chunk {data}, end {cancelled?}, error {status, message}.

const QUEUED_AFTER_MS = 400; // no ack by then: the kernel is busy running a cell
const DEAD_AFTER_MS = 30000; // no ack at all: the kernel restarted or went away

export function createTunnel(model, { onStatus: report = () => {}, now = () => Date.now(), deadAfterMs = DEAD_AFTER_MS } = {}) {
  const pending = new Map();
  let counter = 0;
  let status = "ready";
  const onStatus = (next) => {
    if (next === status) return;
    status = next;
    report(next);
  };
  const prefix = Math.random().toString(36).slice(2, 8);

  function finish(id) {
    const entry = pending.get(id);
    if (!entry) return;
    clearTimeout(entry.queuedTimer);
    clearTimeout(entry.deadTimer);
    pending.delete(id);
    // "dead" stays until an ack proves the kernel is back.
    if (status === "queued" && ![...pending.values()].some((e) => !e.acked)) onStatus("ready");
  }

  function onFrame(frame) {
    const entry = frame && pending.get(frame.id);
    if (!entry) return; // another view's request, or a different kind of message
    switch (frame.kind) {
      case "ack":
        entry.acked = true;
        clearTimeout(entry.queuedTimer);
        clearTimeout(entry.deadTimer);
        if (![...pending.values()].some((e) => !e.acked)) onStatus("ready");
        break;
      case "head":
        entry.resolve(new Response(entry.stream, { status: frame.status, headers: { "Content-Type": frame.content_type } }));
        entry.headed = true;
        break;
      case "chunk":
        if (!entry.closed) entry.controller.enqueue(entry.encoder.encode(frame.data));
        break;
      case "end":
        if (!entry.closed) entry.controller.close();
        entry.closed = true;
        finish(frame.id);
        break;
      case "error": {
        const body = JSON.stringify({ error: { code: "kernel_error", message: frame.message } });
        if (!entry.headed) entry.resolve(new Response(body, { status: frame.status || 500, headers: { "Content-Type": "application/json" } }));
        else if (!entry.closed) entry.controller.error(new Error(frame.message));
        entry.closed = true;
        finish(frame.id);
        break;
      }
    }
  }

  model.on("msg:custom", onFrame);

  async function tunnelFetch(_url, init = {}) {
    const body = typeof init.body === "string" ? init.body : init.body == null ? "" : await new Response(init.body).text();
    const id = `${prefix}-${++counter}`;
    const headers = Object.fromEntries(new Headers(init.headers || {}).entries());
    return new Promise((resolve, reject) => {
      const entry = { resolve, reject, acked: false, headed: false, closed: false, encoder: new TextEncoder() };
      entry.stream = new ReadableStream({ start: (c) => (entry.controller = c) });
      pending.set(id, entry);
      entry.queuedTimer = setTimeout(() => onStatus("queued"), QUEUED_AFTER_MS);
      entry.deadTimer = setTimeout(() => {
        onStatus("dead");
        const err = new Error("The kernel did not answer: if it restarted, re-run the cell that shows this chat.");
        if (!entry.headed) reject(err);
        else if (!entry.closed) entry.controller.error(err);
        entry.closed = true;
        finish(id);
      }, deadAfterMs);
      const signal = init.signal;
      if (signal) {
        const abort = () => {
          if (entry.closed) return;
          model.send({ kind: "cancel", id });
          const err = new DOMException("The request was aborted.", "AbortError");
          if (!entry.headed) reject(err);
          else entry.controller.error(err);
          entry.closed = true;
          finish(id);
        };
        if (signal.aborted) return abort();
        signal.addEventListener("abort", abort, { once: true });
      }
      model.send({ kind: "request", id, body, headers, sent_at: now() });
    });
  }

  return {
    fetch: tunnelFetch,
    pending: () => pending.size,
    dispose() {
      model.off("msg:custom", onFrame);
      for (const [id, entry] of pending) {
        if (!entry.closed) model.send({ kind: "cancel", id });
        clearTimeout(entry.queuedTimer);
        clearTimeout(entry.deadTimer);
      }
      pending.clear();
    },
  };
}

// Read an SSE body ("data: {json}\n\n" frames) and call onEvent for each event.
export async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of frame.split("\n")) if (line.startsWith("data: ")) onEvent(JSON.parse(line.slice(6)));
    }
  }
}
