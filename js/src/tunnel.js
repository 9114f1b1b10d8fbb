// The widget tunnel, browser side: a fetch() that carries ChatKit requests over the widget's
// comm to the in-kernel server and turns the kernel's frames back into a streaming Response.
// Frames: ack, head {status, content_type}, chunk {data}, end {cancelled?}, error {status, message}.
// The status it reports is what it knows, no more: "ready", "queued" (no ack yet: the kernel is
// running a cell), "unanswered" (no ack for a long time: busy, or stopped) and "gone" (the comm
// refused to send or went down: the kernel restarted or shut down).

const QUEUED_AFTER_MS = 400;
const UNANSWERED_AFTER_MS = 30000;
const STOP_GRACE_MS = 5000; // after Stop, how long the kernel may take to end the stream
export const KERNEL_GONE = "The kernel restarted or shut down: run the cell that creates this chat again.";

export function createTunnel(model, { onStatus: report = () => {}, now = () => Date.now(), deadAfterMs = UNANSWERED_AFTER_MS } = {}) {
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
    // "unanswered" stays until an ack proves the kernel is back; "gone" stays.
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
        if (status !== "gone" && ![...pending.values()].some((e) => !e.acked)) onStatus("ready");
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
  // ipywidgets marks every model's comm down when its kernel restarts (and up on a reconnect,
  // with no way to tell which from here): a message that cannot be sent says which.
  const onCommDown = () => {
    try {
      model.send({ kind: "hello" });
    } catch {
      onStatus("gone");
      for (const id of [...pending.keys()]) fail(id, new Error(KERNEL_GONE));
    }
  };
  model.on("comm_live_update", onCommDown);

  function fail(id, err) {
    const entry = pending.get(id);
    if (!entry) return;
    if (!entry.headed) entry.reject(err);
    else if (!entry.closed) entry.controller.error(err);
    entry.closed = true;
    finish(id);
  }

  async function tunnelFetch(url, init = {}) {
    // JSON travels as text; a file (an attachment upload) as the message's binary buffer.
    const binary = init.body != null && typeof init.body !== "string";
    const body = binary ? null : init.body ?? "";
    const buffers = binary ? [await new Response(init.body).arrayBuffer()] : undefined;
    const id = `${prefix}-${++counter}`;
    const headers = Object.fromEntries(new Headers(init.headers || {}).entries());
    return new Promise((resolve, reject) => {
      const entry = { resolve, reject, acked: false, headed: false, closed: false, encoder: new TextEncoder() };
      entry.stream = new ReadableStream({ start: (c) => (entry.controller = c) });
      pending.set(id, entry);
      entry.queuedTimer = setTimeout(() => onStatus("queued"), QUEUED_AFTER_MS);
      entry.deadTimer = setTimeout(() => {
        if (status !== "gone") onStatus("unanswered");
        fail(id, new Error(`The kernel has not answered for ${Math.round(deadAfterMs / 1000)} s: it is busy running a cell, or it stopped.`));
      }, deadAfterMs);
      const signal = init.signal;
      if (signal) {
        // Once a stream flows, an abort asks the kernel to stop and the stream stays open for
        // what the server sent before it stopped (what it saves), up to its "end" frame.
        const abort = () => {
          if (entry.closed) return;
          try { model.send({ kind: "cancel", id }); } catch { /* the comm is gone */ }
          if (entry.headed) {
            clearTimeout(entry.deadTimer);
            entry.deadTimer = setTimeout(() => fail(id, new DOMException("The request was aborted.", "AbortError")), STOP_GRACE_MS);
            return;
          }
          fail(id, new DOMException("The request was aborted.", "AbortError"));
        };
        if (signal.aborted) return abort();
        signal.addEventListener("abort", abort, { once: true });
      }
      try {
        const message = { kind: "request", id, body, headers, sent_at: now(), ...(binary ? { upload: String(url) } : {}) };
        model.send(message, undefined, buffers);
      } catch {
        onStatus("gone"); // JupyterLab's comm throws "Cannot send" once its kernel is gone
        fail(id, new Error(KERNEL_GONE));
      }
    });
  }

  return {
    fetch: tunnelFetch,
    pending: () => pending.size,
    dispose() {
      model.off("msg:custom", onFrame);
      model.off("comm_live_update", onCommDown);
      for (const [id, entry] of pending) {
        if (!entry.closed) try { model.send({ kind: "cancel", id }); } catch { /* the comm is gone */ }
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
