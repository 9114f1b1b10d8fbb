// ChatKit widgets (Card, ListView, Text, Markdown, Title, Caption, Badge, Button, Row, Col, Box,
// Divider, Image, Spacer, Icon) as Preact elements. Text is always text; Markdown is sanitized.
import { html } from "htm/preact";
import { hostOf, imageAllowed, safeColour } from "./images.js";
import { renderMarkdown } from "./markdown.js";

export function BlockedImage({ src, alt }) {
  const label = `Image from ${hostOf(src)}${alt ? `: ${alt}` : ""} (not loaded; click to open)`;
  return /^https?:/i.test(src || "")
    ? html`<a class="ckl-image-blocked" href=${src} target="_blank" rel="noopener noreferrer">${label}</a>`
    : html`<span class="ckl-image-blocked">${label}</span>`;
}

const GAP = (v) => (typeof v === "number" ? `${v * 4}px` : v || undefined);

function children(node, ctx) {
  return (node.children || []).map((c, i) => html`<${WidgetNode} key=${c.key || c.id || i} node=${c} ctx=${ctx} />`);
}

function boxStyle(node) {
  return {
    gap: GAP(node.gap), padding: GAP(node.padding), alignItems: node.align, justifyContent: node.justify,
    flex: node.flex, background: safeColour(node.background),
  };
}

export function WidgetNode({ node, ctx }) {
  if (!node || typeof node !== "object") return null;
  switch (node.type) {
    case "Card":
      return html`<div class="ckl-w-card" data-size=${node.size}>${children(node, ctx)}
        ${node.confirm || node.cancel ? html`<div class="ckl-w-row ckl-w-actions">
          ${node.cancel && html`<${WidgetNode} node=${{ type: "Button", label: node.cancel.label, onClickAction: node.cancel.action, variant: "outline" }} ctx=${ctx} />`}
          ${node.confirm && html`<${WidgetNode} node=${{ type: "Button", label: node.confirm.label, onClickAction: node.confirm.action }} ctx=${ctx} />`}
        </div>` : null}</div>`;
    case "ListView":
      return html`<div class="ckl-w-list" role="list">${(node.children || []).slice(0, node.limit || undefined).map((c, i) => html`<${WidgetNode} key=${c.key || c.id || i} node=${c} ctx=${ctx} />`)}</div>`;
    case "ListViewItem":
      return html`<div class="ckl-w-listitem" role="listitem" tabindex=${node.onClickAction ? 0 : undefined}
        onClick=${node.onClickAction ? () => ctx.action(node.onClickAction) : undefined}
        onKeyDown=${node.onClickAction ? (e) => e.key === "Enter" && ctx.action(node.onClickAction) : undefined}>${children(node, ctx)}</div>`;
    case "Basic":
    case "Box":
    case "Col":
      return html`<div class="ckl-w-col" style=${boxStyle(node)}>${children(node, ctx)}</div>`;
    case "Row":
      return html`<div class="ckl-w-row" style=${boxStyle(node)}>${children(node, ctx)}</div>`;
    case "Text":
      return html`<span class="ckl-w-text" data-weight=${node.weight} data-color=${node.color}>${String(node.value ?? "")}</span>`;
    case "Title":
      return html`<div class="ckl-w-title">${String(node.value ?? "")}</div>`;
    case "Caption":
      return html`<div class="ckl-w-caption">${String(node.value ?? "")}</div>`;
    case "Markdown":
      return html`<div class="ckl-md" dangerouslySetInnerHTML=${{ __html: renderMarkdown(String(node.value ?? "")) }} />`;
    case "Badge":
      return html`<span class="ckl-w-badge" data-color=${node.color}>${String(node.label ?? "")}</span>`;
    case "Button":
      return html`<button type="button" class="ckl-w-button" data-variant=${node.variant || node.style}
        onClick=${() => node.onClickAction && ctx.action(node.onClickAction)}>${String(node.label ?? "")}</button>`;
    case "Divider":
      return html`<hr class="ckl-w-divider" />`;
    case "Spacer":
      return html`<div class="ckl-w-spacer" />`;
    case "Image":
      return imageAllowed(node.src)
        ? html`<img class="ckl-w-image" src=${node.src} alt=${node.alt || ""} width=${node.width} height=${node.height} />`
        : html`<${BlockedImage} src=${node.src} alt=${node.alt} />`;
    case "Icon":
      return html`<span class="ckl-w-icon" aria-hidden="true">•</span>`;
    default: // an unknown component still shows its content
      return node.children ? html`<div class="ckl-w-col">${children(node, ctx)}</div>` : node.value ? html`<span>${String(node.value)}</span>` : null;
  }
}
