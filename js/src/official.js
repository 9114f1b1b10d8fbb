// The official <openai-chatkit> web component, fed by the same tunnel fetch.
// Its script comes from a CDN: load it once per page (globalThis), give up fast when it fails.

const LOADERS = Symbol.for("chatkit-lab.chatkit-script");

export function loadChatKit(src, timeoutMs = 5000) {
  const cache = (globalThis[LOADERS] ??= new Map());
  if (!cache.has(src)) {
    const loading = new Promise((resolve, reject) => {
      if (customElements.get("openai-chatkit")) return resolve();
      let script = [...document.querySelectorAll("script[data-chatkit-lab]")].find((s) => s.dataset.chatkitLab === src);
      if (!script) {
        script = Object.assign(document.createElement("script"), { src, async: true });
        script.dataset.chatkitLab = src;
        document.head.appendChild(script);
      }
      const timer = setTimeout(() => reject(new Error(`the ChatKit script did not load within ${timeoutMs / 1000} s`)), timeoutMs);
      script.addEventListener("load", () => { clearTimeout(timer); resolve(); }, { once: true });
      script.addEventListener("error", () => { clearTimeout(timer); reject(new Error(`the ChatKit script could not be loaded from ${src}`)); }, { once: true });
    }).then(() => Promise.race([
      customElements.whenDefined("openai-chatkit"),
      new Promise((_, reject) => setTimeout(() => reject(new Error("the ChatKit script did not define <openai-chatkit>")), 2000)),
    ]));
    // A failure is remembered for the page: a script tag that already failed fires no more
    // events, so a later chat would otherwise wait out the whole timeout to learn the same.
    loading.catch(() => {});
    cache.set(src, loading);
  }
  return cache.get(src);
}

export async function mountOfficial(el, { src, fetch, domainKey, options, threadId, onThreadChange, timeoutMs = 5000 }) {
  await loadChatKit(src, timeoutMs);
  const chat = document.createElement("openai-chatkit");
  const ready = new Promise((resolve, reject) => {
    chat.addEventListener("chatkit.ready", resolve, { once: true });
    chat.addEventListener("chatkit.error", (e) => reject(e.detail?.error || new Error("ChatKit reported an error")), { once: true });
    setTimeout(() => reject(new Error(`ChatKit was not ready within ${timeoutMs / 1000} s`)), timeoutMs);
  });
  chat.addEventListener("chatkit.thread.change", (e) => onThreadChange(e.detail?.threadId ?? null));
  el.appendChild(chat);
  // setOptions replaces the whole option set: always pass everything.
  chat.setOptions({ ...options, api: { url: "http://localhost/chatkit", domainKey, fetch }, initialThread: threadId || null });
  try {
    await ready;
  } catch (err) {
    chat.remove();
    throw err;
  }
  return chat;
}
