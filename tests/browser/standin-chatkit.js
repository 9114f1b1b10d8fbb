// A local stand-in for the official <openai-chatkit> element: the same method surface
// (setOptions, sendUserMessage, setThreadId, fetchUpdates) and events, driven by api.fetch.
class StandInChatKit extends HTMLElement {
  setOptions(options) {
    this.options = options;
    this.threadId = options.initialThread || null;
    this.log = this.log || this.appendChild(Object.assign(document.createElement("div"), { className: "standin-log" }));
    queueMicrotask(() => this.dispatchEvent(new CustomEvent("chatkit.ready")));
    return Promise.resolve();
  }
  async sendUserMessage({ text }) {
    const input = { content: [{ type: "input_text", text }], attachments: [], inference_options: {} };
    const body = this.threadId
      ? { type: "threads.add_user_message", params: { thread_id: this.threadId, input } }
      : { type: "threads.create", params: { input } };
    this.dispatchEvent(new CustomEvent("chatkit.response.start"));
    const res = await this.options.api.fetch(this.options.api.url, { method: "POST", body: JSON.stringify(body) });
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    const reply = this.log.appendChild(Object.assign(document.createElement("div"), { className: "standin-reply" }));
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = JSON.parse(buffer.slice(6, cut));
        buffer = buffer.slice(cut + 2);
        if (event.type === "thread.created") {
          this.threadId = event.thread.id;
          this.dispatchEvent(new CustomEvent("chatkit.thread.change", { detail: { threadId: this.threadId } }));
        }
        if (event.type === "thread.item.updated" && event.update.type.endsWith("text_delta")) reply.textContent += event.update.delta;
      }
    }
    this.dispatchEvent(new CustomEvent("chatkit.response.end"));
  }
  setThreadId(id) { this.threadId = id; return Promise.resolve(); }
  // Re-read the thread (what the real element does after an out-of-band change): show its messages.
  async fetchUpdates() {
    this.updates = (this.updates || 0) + 1;
    if (!this.threadId) return;
    const body = { type: "items.list", params: { thread_id: this.threadId, limit: 50, order: "asc" } };
    const res = await this.options.api.fetch(this.options.api.url, { method: "POST", body: JSON.stringify(body) });
    const page = await res.json();
    this.log.replaceChildren(...page.data.filter((i) => i.type.endsWith("_message")).map((i) => Object.assign(document.createElement("div"), {
      className: i.type === "user_message" ? "standin-user" : "standin-reply", textContent: i.content.map((p) => p.text).join(""),
    })));
  }
}
customElements.define("openai-chatkit", StandInChatKit);
