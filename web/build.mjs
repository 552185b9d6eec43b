// Builds the live event viewer (viewer/ and the client generated from
// proto/ in src/gen) into one directory: index.html, viewer.css and the
// bundled viewer.js. The gateway embeds viewer/dist, which is committed;
// the test suite rebuilds into a temporary directory and compares.
//   node build.mjs [OUT_DIR]   (default viewer/dist)
import { copyFileSync, mkdirSync } from "node:fs";
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
for (const file of ["index.html", "viewer.css"]) {
  copyFileSync(join("viewer", file), join(out, file));
}
