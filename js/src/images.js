// Which images load without a click: model output must not make the browser fetch a host it
// chose (a prompt injection would leak data in the URL). data: images always load; so do
// images from the origins in ChatKit's `allowedImageDomains` option (also `allowed_image_domains`).
// Everything else becomes a link the user can open on purpose.
let allowed = [];

export function setAllowedImageDomains(domains) {
  allowed = (Array.isArray(domains) ? domains : []).map((d) => String(d).toLowerCase().replace(/\/+$/, ""));
}

export function imageAllowed(src) {
  const url = String(src || "").trim();
  if (/^data:image\//i.test(url)) return true;
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    return false;
  }
  if (!/^https?:$/.test(parsed.protocol)) return false;
  const host = parsed.hostname.toLowerCase();
  return allowed.some((d) => d === parsed.origin.toLowerCase() || d === host || (d.startsWith("*.") && host.endsWith(d.slice(1))));
}

export function hostOf(src) {
  try {
    return new URL(String(src)).host || "another site";
  } catch {
    return "another site";
  }
}

// A CSS colour (a name, #hex, rgb()/hsl(), a custom property): never url(), image-set() or the like.
const COLOUR = /^(#[0-9a-f]{3,8}|[a-z-]+|(rgba?|hsla?)\([\d\s.,%/deg]+\)|var\(--[\w-]+\))$/i;

export function safeColour(value) {
  return typeof value === "string" && COLOUR.test(value.trim()) ? value.trim() : undefined;
}
