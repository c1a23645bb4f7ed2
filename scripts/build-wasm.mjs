// Compile every src/**/*.wat to the same relative path under dist/ with a .wasm extension, next to the
// JavaScript tsc emits there, so modules can load their wasm with new URL('./x.wasm', import.meta.url).
// Plain JS (not compiled by tsc) because it runs as part of the build itself.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import initWabt from 'wabt';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Paths of all .wat files under dir, recursively. */
function watFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return watFiles(path);
    return e.isFile() && e.name.endsWith('.wat') ? [path] : [];
  });
}

const wabt = await initWabt();
for (const path of watFiles(join(ROOT, 'src'))) {
  const rel = relative(ROOT, path);
  let mod;
  try {
    mod = wabt.parseWat(rel, readFileSync(path, 'utf8'), { simd: true });
    mod.validate();
    const out = join(ROOT, 'dist', rel.replace(/\.wat$/, '.wasm'));
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, mod.toBinary({}).buffer);
  } catch (e) {
    // wabt's errors carry file:line:column and the offending source; its stack is minified noise.
    console.error(e instanceof Error ? e.message : String(e));
    process.exitCode = 1;
  } finally {
    mod?.destroy();
  }
}
