// Model output -> safe HTML: markdown-it with raw HTML off, highlight.js for code, KaTeX for
// $…$ / $$…$$ (as MathML: no fonts to fetch), then DOMPurify.
import MarkdownIt from "markdown-it";
import markdownItKatex from "@vscode/markdown-it-katex";
import DOMPurify from "dompurify";
import { hostOf, imageAllowed } from "./images.js";
import hljs from "highlight.js/lib/core";
import bash from "highlight.js/lib/languages/bash";
import javascript from "highlight.js/lib/languages/javascript";
import json from "highlight.js/lib/languages/json";
import python from "highlight.js/lib/languages/python";
import sql from "highlight.js/lib/languages/sql";

for (const [name, lang] of Object.entries({ bash, javascript, json, python, sql })) hljs.registerLanguage(name, lang);

const md = new MarkdownIt({
  html: false, // model output never becomes markup: "<script>" stays text
  linkify: true,
  highlight(code, lang) {
    if (lang && hljs.getLanguage(lang)) {
      try {
        return `<pre class="hljs"><code>${hljs.highlight(code, { language: lang, ignoreIllegals: true }).value}</code></pre>`;
      } catch {
        /* fall back to plain */
      }
    }
    return "";
  },
});
md.use(markdownItKatex.default ?? markdownItKatex, { output: "mathml", throwOnError: false });

// A code block says its language (data-lang, shown by the chat's code toolbar).
const fence = md.renderer.rules.fence;
md.renderer.rules.fence = (tokens, idx, options, env, self) => {
  const lang = tokens[idx].info.trim().split(/\s+/)[0];
  const out = fence(tokens, idx, options, env, self);
  return lang ? out.replace(/^<pre/, `<pre data-lang="${md.utils.escapeHtml(lang)}"`) : out;
};

// Column alignment as a class: inline styles are not allowed through the sanitizer.
for (const rule of ["th_open", "td_open"]) {
  md.renderer.rules[rule] = (tokens, idx, options, env, self) => {
    const token = tokens[idx];
    const align = /text-align:(left|right|center)/.exec(token.attrGet("style") || "")?.[1];
    if (align) {
      token.attrs = token.attrs.filter(([name]) => name !== "style");
      token.attrSet("class", `ckl-align-${align}`);
    }
    return self.renderToken(tokens, idx, options);
  };
}

// Links open in a new tab and cannot reach back into the notebook page; an image from a host
// that is not allowed becomes a link to it (nothing is fetched until the user clicks).
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
  if (node.tagName === "IMG" && !imageAllowed(node.getAttribute("src"))) {
    const link = node.ownerDocument.createElement("a");
    link.className = "ckl-image-blocked";
    link.textContent = `Image from ${hostOf(node.getAttribute("src"))}${node.getAttribute("alt") ? `: ${node.getAttribute("alt")}` : ""} (not loaded; click to open)`;
    if (/^https?:/i.test(node.getAttribute("src") || "")) link.setAttribute("href", node.getAttribute("src"));
    link.setAttribute("target", "_blank");
    link.setAttribute("rel", "noopener noreferrer");
    node.replaceWith(link);
  }
});

const ALLOWED = { USE_PROFILES: { html: true, mathMl: true }, FORBID_TAGS: ["style", "form", "input", "textarea", "button", "iframe"], FORBID_ATTR: ["style"] };

export function renderMarkdown(text) {
  return DOMPurify.sanitize(md.render(text || ""), ALLOWED);
}

// One line of inline markdown (a task's title): bold, code, links; never a block.
export function renderInline(text) {
  return DOMPurify.sanitize(md.renderInline(text || ""), ALLOWED);
}
