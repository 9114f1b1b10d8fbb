// Inline SVG icons (Lucide, ISC): they draw the same everywhere, where emoji fonts are missing
// too. Buttons carry the accessible name; the icon itself is hidden from screen readers.
import { h } from "preact";
import ArrowDown from "lucide/dist/esm/icons/arrow-down.mjs";
import Check from "lucide/dist/esm/icons/check.mjs";
import Copy from "lucide/dist/esm/icons/copy.mjs";
import GitFork from "lucide/dist/esm/icons/git-fork.mjs";
import Menu from "lucide/dist/esm/icons/menu.mjs";
import Paperclip from "lucide/dist/esm/icons/paperclip.mjs";
import Pencil from "lucide/dist/esm/icons/pencil.mjs";
import RefreshCw from "lucide/dist/esm/icons/refresh-cw.mjs";
import Square from "lucide/dist/esm/icons/square.mjs";
import SquarePlus from "lucide/dist/esm/icons/square-plus.mjs";
import ThumbsDown from "lucide/dist/esm/icons/thumbs-down.mjs";
import ThumbsUp from "lucide/dist/esm/icons/thumbs-up.mjs";
import Trash from "lucide/dist/esm/icons/trash.mjs";
import X from "lucide/dist/esm/icons/x.mjs";

const ICONS = {
  "arrow-down": ArrowDown, attach: Paperclip, check: Check, copy: Copy, fork: GitFork, menu: Menu, edit: Pencil, regenerate: RefreshCw,
  stop: Square, insert: SquarePlus, "thumbs-down": ThumbsDown, "thumbs-up": ThumbsUp, delete: Trash, close: X,
};
const SVG = { xmlns: "http://www.w3.org/2000/svg", width: 16, height: 16, viewBox: "0 0 24 24", fill: "none", stroke: "currentColor", "stroke-width": 2, "stroke-linecap": "round", "stroke-linejoin": "round", "aria-hidden": "true", focusable: "false", class: "ckl-svg" };

export function Icon({ name }) {
  return h("svg", SVG, ICONS[name].map(([tag, attrs]) => h(tag, attrs)));
}

// The same icon as markup, for toolbars added to rendered markdown (our own constant strings).
export function iconMarkup(name) {
  const attrs = (a) => Object.entries(a).map(([k, v]) => `${k}="${v}"`).join(" ");
  return `<svg ${attrs(SVG)}>${ICONS[name].map(([tag, a]) => `<${tag} ${attrs(a)}/>`).join("")}</svg>`;
}

// An icon button: its label is its accessible name and its tooltip.
export function IconButton({ icon, label, pressed, onClick, className = "", ...rest }) {
  return h("button", { type: "button", class: `ckl-icon-button ${className}`, "aria-label": label, title: label, "aria-pressed": pressed, onClick, ...rest }, h(Icon, { name: icon }));
}
