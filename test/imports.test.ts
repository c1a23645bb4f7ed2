import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { cruise, type IConfiguration, type ICruiseResult } from 'dependency-cruiser';
import { PACKAGE_ROOT } from '../src/io/paths.js';

const rules = createRequire(import.meta.url)(join(PACKAGE_ROOT, '.dependency-cruiser.cjs')) as IConfiguration;

/** The rule violations in `dir`'s src/ tree. */
async function violations(dir: string): Promise<string[]> {
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    const out = await cruise(['src'], { validate: true, ruleSet: rules, doNotFollow: { path: 'node_modules' }, tsPreCompilationDeps: true });
    return (out.output as ICruiseResult).summary.violations.map((v) => `${v.rule.name}: ${v.from} → ${v.to}`);
  } finally {
    process.chdir(cwd);
  }
}

test('imports follow the layering: model imports nothing from io, pipeline, commands or cli; io nothing above it', async () => {
  assert.deepEqual(await violations(PACKAGE_ROOT), []);
});

test('the import rules catch a model file that reaches into io', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vit-imports-'));
  try {
    for (const d of ['src/model/engines', 'src/io']) mkdirSync(join(dir, d), { recursive: true });
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext' } }));
    writeFileSync(join(dir, 'src/io/cache.ts'), 'export const root = "/tmp";\n');
    writeFileSync(join(dir, 'src/model/engines/onnx.ts'), "import { root } from '../../io/cache.js';\nexport const where = root;\n");
    const found = await violations(dir);
    assert.equal(found.length, 1, found.join('\n'));
    assert.match(found[0], /^model-knows-no-outside: src\/model\/engines\/onnx\.ts → src\/io\/cache\.ts$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
