// The fetch interceptor: every ChatKit request carries the Bearer token (held in memory only,
// never in a trait or the page), and its top-level metadata carries userInfo and pageContext,
// which the server turns into the request context.
export function withContext(fetchFn, { token = () => null, page = () => null, user = () => null } = {}) {
  return async (url, init = {}) => {
    const headers = new Headers(init.headers || {});
    const bearer = token();
    if (bearer) headers.set("Authorization", `Bearer ${bearer}`);
    let body = init.body;
    if (typeof body === "string") {
      try {
        const request = JSON.parse(body);
        if (request && typeof request === "object" && !Array.isArray(request) && request.type) {
          const metadata = { ...(request.metadata || {}) };
          const pageContext = page();
          if (pageContext && Object.keys(pageContext).length) metadata.pageContext = pageContext;
          const userInfo = user();
          if (userInfo) metadata.userInfo = userInfo;
          body = JSON.stringify({ ...request, metadata });
          if (!headers.has("Content-Type")) headers.set("Content-Type", "application/json");
        }
      } catch {
        // not JSON: sent as is, and the server answers with a clear 400
      }
    }
    return fetchFn(url, { ...init, headers, body });
  };
}

const clip = (text, n) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

// What the notebook page shows: its path and title, the first headings of its markdown cells,
// and the active cell's source when the user allows it. JupyterLab and Notebook 7 DOM; other
// hosts (VS Code, Colab) give what the URL and document title say.
export function notebookPage(el, { activeCell = false, maxHeadings = 12 } = {}) {
  const panel = el.closest(".jp-NotebookPanel");
  const notebook = el.closest(".jp-Notebook") || panel?.querySelector(".jp-Notebook");
  const tab = panel && document.querySelector(`.lm-TabBar-tab[data-id="${panel.id}"]`);
  const fromTab = tab?.getAttribute("title")?.match(/Path: (.+)/)?.[1];
  const fromUrl = decodeURIComponent(location.pathname).match(/\/(?:lab\/(?:tree|workspaces\/[^/]+\/tree)|tree|notebooks|doc\/tree)\/(.+\.ipynb)$/)?.[1];
  const path = fromTab || fromUrl || null;
  const headings = notebook
    ? [...notebook.querySelectorAll(".jp-MarkdownCell .jp-RenderedMarkdown :is(h1, h2, h3)")]
        .map((h) => h.textContent.replace(/¶$/, "").trim()).filter(Boolean).slice(0, maxHeadings)
    : [];
  const page = { path, title: headings[0] || path?.split("/").pop() || document.title || null, headings };
  if (activeCell && notebook) {
    const source = notebook.querySelector(".jp-Cell.jp-mod-active .cm-content")?.innerText;
    if (source) page.active_cell = clip(source, 4000);
  }
  return Object.fromEntries(Object.entries(page).filter(([, v]) => v != null && !(Array.isArray(v) && !v.length)));
}
