/**
 * Hostile inputs end fast, with a clear error and bounded memory: each case spawns the real bin/vit on a file
 * scripts/make_hostile.ts writes into a temporary directory (small on disk, huge when expanded or believed),
 * and checks the exit status, the message, that it ended (a generous bound: speed is not what is tested) and
 * the child's peak resident set. Each case's time and peak are printed as a table.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, test } from 'node:test';
import { makeHostile, TINY_IMAGE, TINY_MODEL } from '../scripts/make_hostile.js';
import { PACKAGE_ROOT } from '../src/io/paths.js';
import { TEST_CACHE, VIT_BIN } from './helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'vit-hostile-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const files = makeHostile(join(dir, 'files'));

/** Far more than any case may take (a hang is killed here, and fails); the cases end in about a second. */
const KILL_AFTER_S = 60;
const MAX_SECONDS = 30;
/** Generous: the runtime and engines alone take a few hundred MB; the bombs asked for 3.5 GiB and more. */
const MAX_PEAK_MIB = 1024;

const PRELOAD = pathToFileURL(join(PACKAGE_ROOT, 'dist', 'test', 'helpers', 'peak-rss.js')).href;

interface Measured { code: number | null; signal: string | null; stdout: string; stderr: string; seconds: number; peakMiB: number }

let runs = 0;
function measure(args: string[]): Promise<Measured> {
  const peakFile = join(dir, `peak-${runs++}`);
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', PRELOAD, VIT_BIN, ...args], {
      cwd: PACKAGE_ROOT,
      env: { ...process.env, CI: 'true', XDG_CACHE_HOME: TEST_CACHE, VIT_TEST_PEAK_FILE: peakFile },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => err.push(d));
    const killer = setTimeout(() => child.kill('SIGKILL'), KILL_AFTER_S * 1000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(killer);
      let peakMiB = Number.NaN;
      try {
        peakMiB = Number(readFileSync(peakFile, 'utf8')) / 1024;
      } catch { /* killed before it could say */ }
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), seconds: (performance.now() - t0) / 1000, peakMiB });
    });
  });
}

const table: string[] = [];
after(() => console.log(['| case | exit | time | peak RSS |', '|---|---|---|---|', ...table].join('\n')));

interface Case {
  name: string;
  args: string[];
  code: number;
  stderr?: RegExp;
  check?: (r: Measured) => void;
}

const classify = (extra: string[]) => ['classify', TINY_IMAGE, '-m', TINY_MODEL, '-f', 'jsonl', ...extra];
const withWeights = (name: string) => classify(['-w', files[name]]);

const CASES: Case[] = [
  { name: 'pickle: LONG4 of 256 KiB', args: withWeights('long4-256k.pth'), code: 1, stderr: /a 262144-byte integer is wider than any shape or offset \(limit 32 bytes\)/ },
  { name: 'pickle: LONG4 of 1 MiB', args: withWeights('long4-1m.pth'), code: 1, stderr: /a 1048576-byte integer is wider than any shape/ },
  { name: '.pth: a storage claiming 3.5 GiB', args: withWeights('bomb-storage.pth'), code: 1, stderr: /storage 0 claims 939524096 elements, more than the model could need .*refused before reading it/ },
  { name: '.pth: the same on B/16', args: ['classify', TINY_IMAGE, '-m', 'B/16', '-w', files['bomb-storage.pth']], code: 1, stderr: /storage 0 claims 939524096 elements/ },
  { name: '.pth: a member claiming 3.5 GiB', args: withWeights('bomb-member.pth'), code: 1, stderr: /entry "archive\/data\/0" holds 3758096384 bytes, 4096 expected/ },
  { name: '.pth: a member declaring 4 kB, inflating to 3.5 GiB', args: withWeights('bomb-lying.pth'), code: 1, stderr: /entry "archive\/data\/0" inflates to more than the 4096 bytes it declares; stopped there/ },
  { name: '.pth: data.pkl claiming 3.5 GiB', args: withWeights('bomb-pickle.pth'), code: 1, stderr: /entry "archive\/data.pkl" claims 3758096384 bytes uncompressed, more than the 67108864 .*refused before inflating it/ },
  { name: '.npz: an array claiming 3.5 GiB', args: withWeights('bomb.npz'), code: 1, stderr: /the arrays claim 3758096384 bytes uncompressed, more than the \d+ the model could need; refused before inflating them/ },
  { name: '.npz: an array declaring 4 kB, inflating to 3.5 GiB', args: withWeights('bomb-lying.npz'), code: 1, stderr: /entry "pos_embed.npy" inflates to more than the 4096 bytes it declares/ },
  { name: 'safetensors: overlapping offsets', args: withWeights('overlap.safetensors'), code: 1, stderr: /overlap\.safetensors: tensor "b" has data_offsets \[8, 24\], which overlaps the tensor before it \(which ends at 16\)/ },
  { name: 'safetensors: null header', args: withWeights('null-header.safetensors'), code: 1, stderr: /null-header\.safetensors: the header is null, not a JSON object of tensors/ },
  { name: 'safetensors: null entry', args: withWeights('null-entry.safetensors'), code: 1, stderr: /null-entry\.safetensors: tensor "cls_token" is null, not an object/ },
  {
    name: 'safetensors: 200,000 unexpected tensors', args: withWeights('unexpected-200k.safetensors'), code: 1,
    stderr: /unexpected \(200000\): extra\.0\.weight, .*, and 199988 more/,
    check: (r) => assert.ok(r.stderr.length < 4000, `${r.stderr.length} characters of message`),
  },
  { name: 'FIFO as -w', args: withWeights('fifo.safetensors'), code: 1, stderr: /cannot read weights .*fifo\.safetensors: a FIFO \(named pipe\), not a regular file/ },
  { name: 'FIFO as --labels', args: classify(['--labels', files['labels.fifo']]), code: 2, stderr: /--labels .*labels\.fifo: a FIFO \(named pipe\), not a regular file/ },
  { name: '--labels /dev/zero', args: classify(['--labels', '/dev/zero']), code: 2, stderr: /--labels \/dev\/zero: a character device, not a regular file/ },
  { name: 'FIFO as config.json', args: ['summary', '-m', files['fifo-config']], code: 1, stderr: /config\.json: a FIFO \(named pipe\), not a regular file/ },
  { name: 'preprocessor_config size 1e9', args: ['classify', TINY_IMAGE, '-m', files['pp-shortest-edge']], code: 1, stderr: /preprocessor config: size 1000000000 is more than 8192/ },
  { name: 'preprocessor_config image_std [0,0,0]', args: ['classify', TINY_IMAGE, '-m', files['pp-std-zero']], code: 1, stderr: /preprocessor config: image_std\[0\] 0 must be more than 0/ },
  { name: 'timm crop_pct 1e-6', args: ['classify', TINY_IMAGE, '-m', files['crop-pct']], code: 1, stderr: /pretrained_cfg: crop_pct 0\.000001 is less than 0\.05/ },
  { name: 'config depth 1e9 (vit summary)', args: ['summary', '-m', files['depth']], code: 1, stderr: /invalid model config "depth": depth 1000000000 is more than 1000/ },
  { name: '-b 1e9', args: classify(['-b', '1000000000']), code: 2, stderr: /--batch-size 1000000000 is more than 1024 \(the limit is 1 to 1024\)/ },
  { name: '--image-size 20000', args: classify(['--image-size', '20000']), code: 2, stderr: /--image-size 20000 is more than 8192 \(each side must be 1 to 8192 pixels\)/ },
  { name: '--image-size 4096 on B/16 (65,536 patches)', args: ['summary', '-m', 'B/16', '--image-size', '4096'], code: 2, stderr: /--image-size 4096x4096: invalid model config .*65536 patches, more than 16384/ },
  {
    name: 'a chain of 1,000 nested directories', args: ['classify', files.deep, '-m', TINY_MODEL, '-f', 'jsonl'], code: 0,
    check: (r) => assert.deepEqual(r.stdout.trim().split('\n').map((l) => JSON.parse(l).path.split('/').length - files.deep.split('/').length), [1001]),
  },
  {
    name: 'names that are not UTF-8', args: ['classify', files.names, '-m', TINY_MODEL, '-f', 'jsonl'], code: 0,
    check: (r) => {
      const rows = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
      assert.deepEqual(rows.map((x) => x.path.slice(files.names.length + 1)), ['caf\udce9.png', 'plain.png', '\udcff-bad.png']);
      assert.ok(rows.every((x) => x.error === undefined && x.predictions.length > 0), r.stdout);
      // Byte for byte, the escapes Python's json.loads + os.fsencode turn back into the names' bytes.
      assert.match(r.stdout, /caf\\udce9\.png/);
    },
  },
];

for (const c of CASES) {
  test(`hostile: ${c.name}`, { timeout: (KILL_AFTER_S + 10) * 1000 }, async () => {
    const r = await measure(c.args);
    table.push(`| ${c.name} | ${r.code ?? r.signal} | ${r.seconds.toFixed(2)} s | ${r.peakMiB.toFixed(0)} MiB |`);
    assert.equal(r.code, c.code, `exit ${r.code ?? r.signal}\n${r.stderr}`);
    if (c.stderr) assert.match(r.stderr, c.stderr);
    if (c.code !== 0) assert.equal(r.stderr.trim().split('\n')[0].length > 0, true);
    c.check?.(r);
    assert.ok(r.seconds < MAX_SECONDS, `${r.seconds} s`);
    assert.ok(r.peakMiB < MAX_PEAK_MIB, `peak ${r.peakMiB} MiB`);
  });
}
