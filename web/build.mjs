// Bundles the live event viewer's script (viewer/viewer.ts and the client
// generated from proto/ in src/gen) into OUT_DIR/viewer.js. The gateway
// embeds it (committed, in viewer/dist) beside viewer/index.html and
// viewer/viewer.css; the test suite rebuilds it into a temporary directory
// and compares.
//   node build.mjs [OUT_DIR]   (default viewer/dist)
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";

const out = process.argv[2] ?? "viewer/dist";
mkdirSync(out, { recursive: true });
await build({
  entryPoints: ["viewer/viewer.ts"],
  bundle: true,
  format: "esm",
  minify: true,
  target: "es2022",
  legalComments: "none",
  outfile: join(out, "viewer.js"),
  logLevel: "warning",
});
