// Bundle src/ into the one ES module anywidget loads (a Blob URL: no relative imports) and stamp
// it with a hash of its inputs, so a test can tell a stale bundle without Node.
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";

export function sourcesHash() {
  const hash = createHash("sha256");
  for (const name of readdirSync("src").sort()) hash.update(name).update(readFileSync(`src/${name}`));
  hash.update(readFileSync("package-lock.json"));
  return hash.digest("hex").slice(0, 16);
}

const out = "../src/chatkit_lab/widget/static/widget.js";
const result = await build({
  entryPoints: ["src/index.js"], bundle: true, format: "esm", minify: true, target: "es2020",
  legalComments: "none", write: false, logLevel: "warning",
});
writeFileSync(out, `/* chatkit-lab widget, built by js/build.mjs from sources ${sourcesHash()} */\n${result.outputFiles[0].text}`);
console.log(`wrote ${out} (${(result.outputFiles[0].contents.length / 1024).toFixed(1)} KiB)`);
