import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { homedir, hostname, tmpdir } from 'node:os';
import { Writable } from 'node:stream';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { main } from '../src/cli.js';
import { ModelError, UsageError } from '../src/errors.js';
import { hubSettings, hubTimeouts, isHubId, parseHubId, type HubSettings } from '../src/io/hub-cache.js';
import { fetchModel, resolveHubModel, retryWaitMs } from '../src/io/hub.js';
import { loadModel } from '../src/io/model-source.js';
import { VIT_BIN } from './helpers/cli.js';
import { IMAGES, modelDir } from './helpers/golden.js';
import { gitSha1, sha256, startMockHub, type MockFile, type MockHub, type MockRepo } from './helpers/mock-hub.js';

const COMMIT = 'a'.repeat(39) + '1';
const text = (s: string) => new TextEncoder().encode(s);

/** Made-up bytes that look nothing alike at every offset, so a resumed or corrupted file cannot pass by luck. */
function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

const WEIGHTS = bytes(300_000, 7);
const CONFIG = text('{"model_type": "vit", "hidden_size": 8}\n');
const PREPROCESSOR = text('{"image_mean": [0.5, 0.5, 0.5]}\n');

function repo(id: string, extra: Partial<MockRepo> = {}, files?: MockFile[]): MockRepo {
  return {
    id,
    commit: COMMIT,
    files: files ?? [
      { name: 'config.json', body: CONFIG },
      { name: 'preprocessor_config.json', body: PREPROCESSOR },
      { name: 'model.safetensors', body: WEIGHTS },
    ],
    ...extra,
  };
}

const tmpRoot = mkdtempSync(join(tmpdir(), 'vit-hub-'));
after(() => rmSync(tmpRoot, { recursive: true, force: true }));
let tmpCount = 0;
const freshDir = () => {
  const d = join(tmpRoot, String(tmpCount++));
  mkdirSync(d, { recursive: true });
  return d;
};

/** A local URL where nothing listens (a port just released). */
async function deadEndpoint(): Promise<string> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  await new Promise((r) => server.close(r));
  return `http://127.0.0.1:${port}`;
}
const NOWHERE = await deadEndpoint();

function settings(hub: MockHub | null, extra: Partial<HubSettings> = {}): HubSettings {
  return { cacheDir: freshDir(), endpoint: hub?.url ?? NOWHERE, token: null, offline: false, ...extra };
}

async function withHub(repos: MockRepo[], fn: (hub: MockHub) => Promise<void>, opts?: Parameters<typeof startMockHub>[1]): Promise<void> {
  const hub = await startMockHub(repos, opts);
  try {
    await fn(hub);
  } finally {
    await hub.close();
  }
}

/** Run `fn` with these hub environment variables; the others (which could reach the real cache or a real token) are cleared. */
async function withEnv<T>(env: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const keys = ['HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'HF_HOME', 'HF_ENDPOINT', 'HF_TOKEN', 'HF_TOKEN_PATH', 'HUGGING_FACE_HUB_TOKEN', 'HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE', 'XDG_CACHE_HOME'];
  const saved = new Map(keys.map((k) => [k, process.env[k]]));
  for (const k of keys) delete process.env[k];
  Object.assign(process.env, { HF_HOME: freshDir() }, env);
  try {
    return await fn();
  } finally {
    for (const [k, v] of saved) if (v === undefined) delete process.env[k]; else process.env[k] = v;
  }
}

/** The CLI in-process, stdout and stderr collected separately. */
function runMain(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  const collect = () => {
    const chunks: Buffer[] = [];
    const stream = new Writable({ write: (c: Buffer, _enc, done) => (chunks.push(c), done()) });
    return { chunks, stream };
  };
  const out = collect();
  const err = collect();
  return withEnv(env, async () => {
    const code = await main(args, out.stream, err.stream);
    return { code, stdout: Buffer.concat(out.chunks).toString('utf8'), stderr: Buffer.concat(err.chunks).toString('utf8') };
  });
}

const repoDir = (s: HubSettings, id: string) => join(s.cacheDir, `models--${id.replace('/', '--')}`);

test('hub: fetch writes the huggingface_hub cache layout (blobs, relative links, refs/main)', async () => {
  await withHub([repo('acme/tiny-vit')], async (hub) => {
    const s = settings(hub);
    const r = await fetchModel('acme/tiny-vit', { settings: s });
    const dir = repoDir(s, 'acme/tiny-vit');
    assert.equal(r.commit, COMMIT);
    assert.equal(r.dir, join(dir, 'snapshots', COMMIT));
    assert.deepEqual(r.downloaded, ['config.json', 'preprocessor_config.json', 'model.safetensors']);
    assert.equal(readFileSync(join(dir, 'refs', 'main'), 'utf8'), COMMIT);
    const want = new Map([['config.json', gitSha1(CONFIG)], ['preprocessor_config.json', gitSha1(PREPROCESSOR)], ['model.safetensors', sha256(WEIGHTS)]]);
    assert.deepEqual(readdirSync(join(dir, 'blobs')).sort(), [...want.values()].sort());
    assert.deepEqual(readdirSync(r.dir).sort(), [...want.keys()].sort());
    for (const [file, etag] of want) {
      const pointer = join(r.dir, file);
      assert.ok(lstatSync(pointer).isSymbolicLink(), file);
      assert.equal(readlinkSync(pointer), `../../blobs/${etag}`, file);
    }
    assert.deepEqual(new Uint8Array(readFileSync(join(r.dir, 'model.safetensors'))), WEIGHTS);
    assert.deepEqual(new Uint8Array(readFileSync(join(r.dir, 'config.json'))), CONFIG);
    // The weights came from the CDN via the redirect; metadata came from HEAD on the hub's resolve URLs.
    assert.equal(hub.requests.filter((q) => q.server === 'cdn' && q.method === 'GET').length, 1);
    const heads = hub.requests.filter((q) => q.method === 'HEAD').map((q) => q.path);
    assert.deepEqual(heads, ['config.json', 'preprocessor_config.json', 'model.safetensors'].map((f) => `/acme/tiny-vit/resolve/${COMMIT}/${f}`));
    assert.equal(hub.requests.filter((q) => q.path.startsWith('/api/models/acme/tiny-vit/revision/main')).length, 1);
    assert.ok(hub.requests.every((q) => q.headers['accept-encoding'] === 'identity'));
  });
});

test('hub: a second fetch is served by the cache (no file GETs); a new revision reuses the blobs', async () => {
  await withHub([repo('acme/tiny-vit')], async (hub) => {
    const s = settings(hub);
    await fetchModel('acme/tiny-vit', { settings: s });
    const gets = hub.bodyGets().length;
    const heads = hub.requests.filter((q) => q.method === 'HEAD').length;
    const again = await fetchModel('acme/tiny-vit', { settings: s });
    assert.deepEqual(again.downloaded, []);
    assert.equal(hub.bodyGets().length, gets, 'no file was downloaded again');
    assert.equal(hub.requests.filter((q) => q.method === 'HEAD').length, heads, 'no file was even asked about');
    // A commit hash as revision: same snapshot, no ref named after the hash.
    const pinned = await fetchModel('acme/tiny-vit', { settings: s, revision: COMMIT });
    assert.equal(pinned.dir, again.dir);
    assert.ok(!existsSync(join(repoDir(s, 'acme/tiny-vit'), 'refs', COMMIT)));
    // A snapshot link lost (another revision, or a cleaned snapshot): relinked from the blob with a HEAD only.
    rmSync(join(again.dir, 'model.safetensors'));
    const relinked = await fetchModel('acme/tiny-vit', { settings: s });
    assert.deepEqual(relinked.downloaded, []);
    assert.equal(hub.bodyGets('model.safetensors').length, 1);
    assert.equal(readlinkSync(join(again.dir, 'model.safetensors')), `../../blobs/${sha256(WEIGHTS)}`);
  });
});

test('hub: a corrupted body fails the sha256 check, is deleted and never linked', async () => {
  await withHub([repo('acme/tiny-vit')], async (hub) => {
    const s = settings(hub);
    hub.corrupt.add('model.safetensors');
    await assert.rejects(fetchModel('acme/tiny-vit', { settings: s }), (e: unknown) =>
      e instanceof ModelError && /checksum mismatch for acme\/tiny-vit@main\/model\.safetensors/.test(e.message) && e.message.includes(sha256(WEIGHTS)));
    const dir = repoDir(s, 'acme/tiny-vit');
    assert.ok(!existsSync(join(dir, 'snapshots', COMMIT, 'model.safetensors')));
    assert.deepEqual(readdirSync(join(dir, 'blobs')).filter((b) => b.startsWith(sha256(WEIGHTS))), [], 'neither blob nor .incomplete kept');
    assert.ok(!existsSync(join(dir, 'refs', 'main')), 'no ref to a broken snapshot');
    hub.corrupt.clear();
    const r = await fetchModel('acme/tiny-vit', { settings: s });
    assert.equal(sha256(readFileSync(join(r.dir, 'model.safetensors'))), sha256(WEIGHTS));
  });
});

test('hub: a dropped connection is resumed with a Range request, in the same run and in the next one', async () => {
  await withHub([repo('acme/tiny-vit')], async (hub) => {
    // Within one run: the first GET dies after 100000 bytes, the retry asks for the rest.
    const s = settings(hub);
    const notes: string[] = [];
    hub.dropAfter.set('model.safetensors', { bytes: 100_000, times: 1 });
    const r = await fetchModel('acme/tiny-vit', { settings: s, note: (m) => notes.push(m) });
    const gets = hub.bodyGets('model.safetensors');
    assert.equal(gets.length, 2);
    assert.equal(gets[0].headers.range, undefined);
    assert.equal(gets[1].headers.range, 'bytes=100000-');
    assert.equal(sha256(readFileSync(join(r.dir, 'model.safetensors'))), sha256(WEIGHTS));
    assert.match(notes.join('\n'), /connection lost after 100000 of 300000 bytes.*resuming/);

    // Across runs: every attempt of the first run fails, the partial stays, the next run continues it.
    const s2 = settings(hub);
    hub.dropAfter.set('model.safetensors', { bytes: 120_000, times: 1 });
    await assert.rejects(fetchModel('acme/tiny-vit', { settings: s2, attempts: 1 }), /interrupted after 120000 of 300000 bytes.*run the command again to resume/);
    const partial = join(repoDir(s2, 'acme/tiny-vit'), 'blobs', `${sha256(WEIGHTS)}.incomplete`);
    assert.equal(statSync(partial).size, 120_000);
    assert.ok(!existsSync(join(repoDir(s2, 'acme/tiny-vit'), 'snapshots', COMMIT, 'model.safetensors')));
    const before = hub.bodyGets('model.safetensors').length;
    const r2 = await fetchModel('acme/tiny-vit', { settings: s2 });
    const resumed = hub.bodyGets('model.safetensors').slice(before);
    assert.deepEqual(resumed.map((q) => q.headers.range), ['bytes=120000-']);
    assert.equal(sha256(readFileSync(join(r2.dir, 'model.safetensors'))), sha256(WEIGHTS));
    assert.ok(!existsSync(partial));
  });
});

test('hub: two fetches of one repository at once download each blob once, the other waiting; a lock left by a dead process is taken over', async () => {
  await withHub([repo('acme/tiny-vit')], async (hub) => {
    // A slow body, so that the second fetch arrives while the first downloads (both share one cache).
    hub.trickle.set('model.safetensors', { bytes: 30_000, everyMs: 40 });
    const s = settings(hub);
    const notes: string[] = [];
    const [a, b] = await Promise.all([
      fetchModel('acme/tiny-vit', { settings: s }),
      new Promise((r) => setTimeout(r, 100)).then(() => fetchModel('acme/tiny-vit', { settings: s, note: (m) => notes.push(m) })),
    ]);
    assert.equal(hub.bodyGets('model.safetensors').length, 1, 'downloaded twice');
    for (const r of [a, b]) assert.equal(sha256(readFileSync(join(r.dir, 'model.safetensors'))), sha256(WEIGHTS));
    assert.match(notes.join('\n'), /another process is downloading it; waiting/);
    const blobs = readdirSync(join(repoDir(s, 'acme/tiny-vit'), 'blobs'));
    assert.deepEqual(blobs.filter((f) => /\.(lock|incomplete)$/.test(f)), [], 'lock or partial left behind');

    // A lock whose holder is gone (this host, a process that has ended) does not block the next fetch.
    hub.trickle.delete('model.safetensors');
    const s2 = settings(hub);
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
    const lock = join(repoDir(s2, 'acme/tiny-vit'), 'blobs', `${sha256(WEIGHTS)}.vit.lock`);
    mkdirSync(dirname(lock), { recursive: true });
    writeFileSync(lock, `${hostname()} ${dead}\n`);
    const r2 = await within(10, () => fetchModel('acme/tiny-vit', { settings: s2 }));
    assert.equal(sha256(readFileSync(join(r2.dir, 'model.safetensors'))), sha256(WEIGHTS));
    assert.ok(!existsSync(lock));
  });
});

test('hub: 429 and 5xx answers are asked again, after their Retry-After (seconds or a date) or a backoff; a hub that stays busy is an error', { timeout: 60_000 }, async () => {
  assert.equal(retryWaitMs('3', 1), 3000);
  assert.equal(retryWaitMs('3600', 1), 60_000);
  assert.equal(retryWaitMs(new Date(Date.UTC(2030, 0, 1, 0, 0, 2)).toUTCString(), 1, Date.UTC(2030, 0, 1)), 2000);
  assert.equal(retryWaitMs(null, 4), 4000);
  assert.equal(retryWaitMs('soon', 2), 2000);
  await withHub([repo('acme/tiny-vit')], async (hub) => {
    hub.busy.set('api', { status: 429, times: 1, retryAfter: '0' });
    hub.busy.set('config.json', { status: 503, times: 1, retryAfter: '0' });
    hub.busy.set('cdn', { status: 502, times: 1, retryAfter: '0' });
    const r = await within(10, () => fetchModel('acme/tiny-vit', { settings: settings(hub) }));
    assert.equal(sha256(readFileSync(join(r.dir, 'model.safetensors'))), sha256(WEIGHTS));
    assert.deepEqual([...hub.busy.values()].map((b) => b.times), [0, 0, 0], 'every busy answer was met');
    // Four retries, then the status is the error.
    hub.busy.set('api', { status: 503, times: 5, retryAfter: '0' });
    await assert.rejects(fetchModel('acme/tiny-vit', { settings: settings(hub) }), /the hub answered HTTP 503 for acme\/tiny-vit@main$/);
  });
});

test('hub: a server that ignores Range (200 with the whole file) restarts the file instead of appending', async () => {
  await withHub([repo('acme/tiny-vit')], async (hub) => {
    const s = settings(hub);
    hub.dropAfter.set('model.safetensors', { bytes: 50_000, times: 1 });
    hub.ignoreRange = true;
    const r = await fetchModel('acme/tiny-vit', { settings: s });
    assert.equal(hub.bodyGets('model.safetensors')[1].headers.range, 'bytes=50000-');
    assert.equal(sha256(readFileSync(join(r.dir, 'model.safetensors'))), sha256(WEIGHTS));
  });
});

test('hub: sharded safetensors (index + every shard) and a repository without preprocessor_config.json', async () => {
  const shard1 = bytes(20_000, 1);
  const shard2 = bytes(30_000, 2);
  const index = text(JSON.stringify({
    metadata: { total_size: 50_000 },
    weight_map: { 'a.weight': 'model-00001-of-00002.safetensors', 'b.weight': 'model-00002-of-00002.safetensors', 'c.bias': 'model-00001-of-00002.safetensors' },
  }));
  const files: MockFile[] = [
    { name: 'config.json', body: CONFIG },
    { name: 'model.safetensors.index.json', body: index },
    { name: 'model-00001-of-00002.safetensors', body: shard1 },
    { name: 'model-00002-of-00002.safetensors', body: shard2 },
    { name: 'pytorch_model.bin', body: bytes(10, 3) },
  ];
  await withHub([repo('acme/sharded', {}, files)], async (hub) => {
    const s = settings(hub);
    const r = await fetchModel('acme/sharded', { settings: s });
    assert.deepEqual(r.downloaded, ['config.json', 'model.safetensors.index.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    assert.equal(readlinkSync(join(r.dir, 'model-00002-of-00002.safetensors')), `../../blobs/${sha256(shard2)}`);
    assert.equal(hub.bodyGets('pytorch_model.bin').length, 0, 'safetensors preferred over the pickle');
    // The absent optional file is remembered the way huggingface_hub does, and never asked for.
    assert.equal(readFileSync(join(repoDir(s, 'acme/sharded'), '.no_exist', COMMIT, 'preprocessor_config.json'), 'utf8'), '');
    assert.equal(hub.requests.filter((q) => q.path.includes('preprocessor_config.json')).length, 0);
    // Complete in the cache, so --model resolves without the network.
    await hub.close();
    assert.equal(await resolveHubModel('acme/sharded', { settings: s }), r.dir);
  });
});

test('hub: pytorch_model.bin when there is no safetensors; a renamed repository is followed (relative redirect)', async () => {
  const bin = bytes(5_000, 9);
  const files = [{ name: 'config.json', body: CONFIG }, { name: 'pytorch_model.bin', body: bin }];
  await withHub([repo('acme/new-name', {}, files)], async (hub) => {
    const s = settings(hub);
    const r = await fetchModel('acme/old-name', { settings: s });
    assert.equal(r.dir, join(repoDir(s, 'acme/old-name'), 'snapshots', COMMIT), 'cached under the id that was asked for');
    assert.deepEqual(new Uint8Array(readFileSync(join(r.dir, 'pytorch_model.bin'))), bin);
    assert.ok(hub.requests.some((q) => q.method === 'HEAD' && q.path.startsWith('/acme/new-name/resolve/')));
  }, { renamed: { 'acme/old-name': 'acme/new-name' } });
});

test('hub: a repository with no checkpoint is refused before any download, naming its files (and its ONNX export, if any)', async () => {
  // transformers.js's layout: configs and onnx/*.onnx, no safetensors or pytorch_model.bin.
  const exportOnly = [{ name: 'config.json', body: CONFIG }, { name: 'onnx/model.onnx', body: bytes(2_000, 3) }, { name: 'onnx/model_quantized.onnx', body: bytes(1_000, 4) }];
  const bare = [{ name: 'config.json', body: CONFIG }, { name: 'README.md', body: text('# no weights\n') }];
  await withHub([repo('acme/onnx-only', {}, exportOnly), repo('acme/bare', {}, bare)], async (hub) => {
    const env = { HF_ENDPOINT: hub.url, HF_HUB_CACHE: freshDir() };
    const onnxOnly = await runMain(['fetch', 'acme/onnx-only'], env);
    assert.equal(onnxOnly.code, 1);
    assert.match(onnxOnly.stderr, /acme\/onnx-only@main has no weights this tool reads \(onnx\/model\.onnx is an ONNX export; vit builds its own graph from a checkpoint and does not run one\): expected one of model\.safetensors/);
    const none = await runMain(['fetch', 'acme/bare'], env);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /acme\/bare@main has no weights this tool reads: expected one of model\.safetensors, .*files: .*README\.md/);
    assert.ok(!hub.requests.some((q) => q.path.includes('/resolve/')), 'nothing downloaded');
  });
});

test('hub: offline mode serves a cache the Python tools wrote, and fails clearly when the model is missing', async () => {
  // Written by hand exactly as huggingface_hub lays it out, not by our code.
  const s = settings(null, { offline: true });
  const dir = repoDir(s, 'py/made');
  const snap = join(dir, 'snapshots', COMMIT);
  mkdirSync(join(dir, 'blobs'), { recursive: true });
  mkdirSync(join(dir, 'refs'));
  mkdirSync(snap, { recursive: true });
  writeFileSync(join(dir, 'refs', 'main'), COMMIT);
  writeFileSync(join(dir, 'blobs', gitSha1(CONFIG)), CONFIG);
  writeFileSync(join(dir, 'blobs', sha256(WEIGHTS)), WEIGHTS);
  symlinkSync(`../../blobs/${gitSha1(CONFIG)}`, join(snap, 'config.json'));
  symlinkSync(`../../blobs/${sha256(WEIGHTS)}`, join(snap, 'model.safetensors'));

  const r = await fetchModel('py/made', { settings: s });
  assert.equal(r.dir, snap);
  assert.equal(r.commit, COMMIT);
  assert.equal(await resolveHubModel('py/made', { settings: s }), snap);
  assert.equal(await resolveHubModel('py/made@' + COMMIT, { settings: s }), snap);
  // Online but nothing answers: the cached model is still served, with a note saying so.
  const notes: string[] = [];
  assert.equal((await fetchModel('py/made', { settings: { ...s, offline: false }, note: (m) => notes.push(m) })).dir, snap);
  assert.match(notes.join('\n'), /cannot reach .*; using the cached snapshot of py\/made@main/);
  await assert.rejects(fetchModel('py/absent', { settings: { ...s, offline: false } }), /cannot reach/);
  await assert.rejects(fetchModel('py/absent', { settings: s }), (e: unknown) =>
    e instanceof ModelError && /offline \(HF_HUB_OFFLINE is set\) and not in cache: py\/absent@main/.test(e.message));
  await assert.rejects(fetchModel('py/made', { settings: s, revision: 'v2' }), /not in cache: py\/made@v2/);
  // Through the CLI: the environment variable, no server anywhere, exit 1 with the message.
  const cli = await runMain(['fetch', 'py/absent'], { HF_HUB_CACHE: s.cacheDir, HF_HUB_OFFLINE: '1', HF_ENDPOINT: NOWHERE });
  assert.equal(cli.code, 1);
  assert.equal(cli.stdout, '');
  assert.match(cli.stderr, /offline .* and not in cache: py\/absent@main/);
  const ok = await runMain(['fetch', 'py/made'], { HF_HUB_CACHE: s.cacheDir, HF_HUB_OFFLINE: 'true' });
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(ok.stdout, `${snap}\n`);
  // A snapshot whose weights are gone (the blob deleted): offline, summary still reads the config, a run says
  // what is missing (exit 1), not a usage error about --weights.
  rmSync(join(dir, 'blobs', sha256(WEIGHTS)));
  writeFileSync(join(dir, 'blobs', gitSha1(CONFIG)), readFileSync(join(modelDir('odd40', 'hf'), 'config.json'))); // a config a model can be built from
  const run = await runMain(['classify', join(IMAGES, 'odd40_0.png'), '-m', 'py/made'], { HF_HUB_CACHE: s.cacheDir, HF_HUB_OFFLINE: '1' });
  assert.equal(run.code, 1, run.stderr);
  assert.equal(run.stderr, 'vit: model "py/made" has no weights in the cache (only its config was found): fetch them where the hub is reachable (vit fetch py/made)\n');
});

test('hub: 401, 404 and malformed ids are clear errors with the right exit status', async () => {
  await withHub([repo('acme/private-vit', { private: true })], async (hub) => {
    const env = { HF_ENDPOINT: hub.url, HF_HUB_CACHE: freshDir() };
    const denied = await runMain(['fetch', 'acme/private-vit'], env);
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /authentication required: set HF_TOKEN/);
    const missing = await runMain(['fetch', 'acme/nope'], env);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /repository or file not found: acme\/nope@main/);
    const badRev = await runMain(['fetch', 'acme/private-vit', '--revision', 'v9'], { ...env, HF_TOKEN: 'hf_secret' });
    assert.match(badRev.stderr, /repository or file not found: acme\/private-vit@v9/);
    const malformed = await runMain(['fetch', 'not a/valid/id'], env);
    assert.equal(malformed.code, 2);
    assert.match(malformed.stderr, /is not a hub model id: expected ORG\/NAME/);
    assert.equal(malformed.stdout + missing.stdout + denied.stdout, '');
  }, { token: 'hf_secret' });
  // Nothing listening: said plainly, with the way out.
  await assert.rejects(fetchModel('acme/x', { settings: settings(null) }), (e: unknown) =>
    e instanceof ModelError && e.message.startsWith(`cannot reach ${NOWHERE}: ECONNREFUSED`) && e.message.includes('HF_HUB_OFFLINE=1'));
});

test('hub: the token goes to the hub endpoint, never to the CDN it redirects to', async () => {
  await withHub([repo('acme/private-vit', { private: true })], async (hub) => {
    const home = freshDir();
    writeFileSync(join(home, 'token'), 'hf_secret\n'); // as `huggingface-cli login` stores it
    const cache = freshDir();
    const r = await runMain(['fetch', 'acme/private-vit'], { HF_ENDPOINT: `${hub.url}/`, HF_HUB_CACHE: cache, HF_HOME: home });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${join(cache, 'models--acme--private-vit', 'snapshots', COMMIT)}\n`);
    const hubReqs = hub.requests.filter((q) => q.server === 'hub');
    const cdnReqs = hub.requests.filter((q) => q.server === 'cdn');
    assert.ok(hubReqs.length >= 4 && cdnReqs.length === 1);
    assert.ok(hubReqs.every((q) => q.headers.authorization === 'Bearer hf_secret'));
    assert.ok(cdnReqs.every((q) => q.headers.authorization === undefined));
  }, { token: 'hf_secret' });
});

test('hub: settings from the environment, as huggingface_hub reads them', () => {
  const home = homedir();
  assert.equal(hubSettings({}).cacheDir, join(home, '.cache', 'huggingface', 'hub'));
  assert.equal(hubSettings({ XDG_CACHE_HOME: '/x' }).cacheDir, '/x/huggingface/hub');
  assert.equal(hubSettings({ XDG_CACHE_HOME: '/x', HF_HOME: '/h' }).cacheDir, '/h/hub');
  assert.equal(hubSettings({ HF_HOME: '/h', HUGGINGFACE_HUB_CACHE: '/legacy' }).cacheDir, '/legacy');
  assert.equal(hubSettings({ HF_HOME: '/h', HUGGINGFACE_HUB_CACHE: '/legacy', HF_HUB_CACHE: '/c' }).cacheDir, '/c');
  assert.equal(hubSettings({ HF_HUB_CACHE: '~/hfc' }).cacheDir, join(home, 'hfc'));
  assert.equal(hubSettings({ HF_HUB_CACHE: '$BASE/hfc', BASE: '/b' }).cacheDir, '/b/hfc');
  assert.equal(hubSettings({}).endpoint, 'https://huggingface.co');
  assert.equal(hubSettings({ HF_ENDPOINT: 'https://mirror.example/' }).endpoint, 'https://mirror.example');
  for (const v of ['1', 'true', 'YES', 'on']) assert.equal(hubSettings({ HF_HUB_OFFLINE: v }).offline, true, v);
  for (const v of ['0', 'false', '']) assert.equal(hubSettings({ HF_HUB_OFFLINE: v }).offline, false, v);
  assert.equal(hubSettings({ TRANSFORMERS_OFFLINE: '1' }).offline, true);
  // huggingface_hub reads `HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE` and `HF_TOKEN or HUGGING_FACE_HUB_TOKEN`:
  // a set HF_HUB_OFFLINE=0 wins, an empty HF_TOKEN does not.
  assert.equal(hubSettings({ HF_HUB_OFFLINE: '0', TRANSFORMERS_OFFLINE: '1' }).offline, false);
  assert.equal(hubSettings({ HF_HOME: freshDir(), HF_TOKEN: '', HUGGING_FACE_HUB_TOKEN: 'hf_legacy' }).token, 'hf_legacy');
  const h = freshDir();
  assert.equal(hubSettings({ HF_HOME: h }).token, null);
  writeFileSync(join(h, 'token'), 'hf_file\n');
  assert.equal(hubSettings({ HF_HOME: h }).token, 'hf_file');
  assert.equal(hubSettings({ HF_HOME: h, HF_TOKEN: 'hf_env' }).token, 'hf_env');
});

test('hub: which names are hub ids (presets and paths are not)', () => {
  for (const id of ['google/vit-base-patch16-224', 'acme/tiny_vit.v2', 'acme/x@main', 'acme/x@refs/pr/1']) assert.ok(isHubId(id), id);
  for (const n of ['B/16', 'ViT-B/17', './models/x', '/abs/dir', 'a/b/c', 'vit_base_patch16_224', 'acme/..', 'acme/a--b', '-x/y']) assert.ok(!isHubId(n), n);
  assert.deepEqual(parseHubId('acme/x@v1'), { repo: 'acme/x', revision: 'v1' });
  assert.deepEqual(parseHubId('acme/x', 'dev'), { repo: 'acme/x', revision: 'dev' });
  assert.throws(() => parseHubId('acme'), UsageError);
  assert.throws(() => parseHubId('acme/x', '../../etc'), UsageError);
});

test('hub: --model ORG/NAME end to end: a real tiny model fetched through the CLI, then used from the cache', async () => {
  const src = modelDir('odd40', 'hf');
  const files = ['config.json', 'preprocessor_config.json', 'model.safetensors'].map((name) => ({ name, body: new Uint8Array(readFileSync(join(src, name))) }));
  await withHub([repo('acme/odd40', {}, files)], async (hub) => {
    const cache = freshDir();
    const env = { HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache };
    const first = await runMain(['summary', '--model', 'acme/odd40', '--json'], env);
    assert.equal(first.code, 0, first.stderr);
    const s = JSON.parse(first.stdout);
    assert.equal(s.embedDim, 40);
    assert.equal(s.depth, 3);
    assert.equal(hub.bodyGets('model.safetensors').length, 1);
    // From now on the cache answers: no request at all, even with the hub gone.
    const seen = hub.requests.length;
    const again = await runMain(['summary', '--model', 'acme/odd40', '--json'], env);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, first.stdout);
    assert.equal(hub.requests.length, seen);
    const fetched = await runMain(['fetch', 'acme/odd40', '--quiet'], { ...env, HF_HUB_OFFLINE: '1' });
    assert.equal(fetched.stdout, `${join(cache, 'models--acme--odd40', 'snapshots', COMMIT)}\n`);
    assert.equal(fetched.stderr, '');
    // The weights load and pass the strict checks, from the snapshot's links.
    const m = await withEnv({ HF_HUB_CACHE: cache, HF_HUB_OFFLINE: '1' }, () => loadModel({ model: 'acme/odd40' }));
    assert.equal(m.source, 'acme/odd40');
    assert.equal(m.config.numClasses, 7);
    assert.equal(m.weights.get('cls_token')?.shape.join('x'), '1x1x40');
    // classify through the hub id (offline, from the cache) gives what the fixture directory itself gives.
    const image = join(IMAGES, 'odd40_0.png');
    const viaHub = await runMain(['classify', image, '--model', 'acme/odd40', '--quiet'], { ...env, HF_HUB_OFFLINE: '1' });
    const viaDir = await runMain(['classify', image, '--model', src, '--quiet'], {});
    assert.equal(viaHub.code, 0, viaHub.stderr);
    assert.match(viaHub.stdout, /^path,rank,index,label,score,logit,error\n/);
    assert.equal(viaHub.stdout, viaDir.stdout);
    // A directory that does not exist is looked up on the hub, and the error says why.
    const notDir = await runMain(['summary', '--model', 'models/nothing-here'], { ...env, HF_HUB_OFFLINE: '1' });
    assert.equal(notDir.code, 1);
    assert.match(notDir.stderr, /not in cache: models\/nothing-here@main .*"models\/nothing-here" is not a preset or a directory either/);
    // A mistyped preset stays a usage error listing the presets, not a hub lookup.
    const typo = await runMain(['summary', '--model', 'B/17'], env);
    assert.equal(typo.code, 2);
    assert.match(typo.stderr, /unknown model "B\/17"/);
    assert.equal(hub.requests.length, seen);
  });
});

// ---- limits on every wait and on every body: a hub that stalls, trickles or overflows ends the run quickly

/** Short limits for these tests: 0.4 s per phase, and a floor of 20 kB/s over 0.5 s windows. */
const QUICK = hubTimeouts({ HF_HUB_ETAG_TIMEOUT: '0.4', HF_HUB_DOWNLOAD_TIMEOUT: '0.4', VIT_HUB_MIN_RATE: '20000', VIT_HUB_RATE_WINDOW: '0.5' });

/** Run `fn`, asserting it settles within `seconds` (generously: these guard against hangs, never measure speed). */
async function within<T>(seconds: number, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    assert.ok(performance.now() - t0 < seconds * 1000, `took ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
}

const blobOf = (s: HubSettings, id: string, body: Uint8Array) => join(repoDir(s, id), 'blobs', sha256(body));

test('hub limits: the timeouts come from huggingface_hub\'s variables and ours, in seconds; bad values are usage errors', () => {
  const t = hubTimeouts({ HF_HUB_ETAG_TIMEOUT: '2.5', HF_HUB_DOWNLOAD_TIMEOUT: '7', VIT_HUB_MIN_RATE: '100', VIT_HUB_RATE_WINDOW: '4' });
  assert.deepEqual(t.metadata, { connectMs: 2500, headersMs: 2500, idleMs: 2500, minRate: 100, rateWindowMs: 4000 });
  assert.equal(t.download.idleMs, 7000);
  assert.deepEqual(hubTimeouts({}).download, { connectMs: 10_000, headersMs: 10_000, idleMs: 10_000, minRate: 1024, rateWindowMs: 30_000 });
  assert.throws(() => hubTimeouts({ HF_HUB_DOWNLOAD_TIMEOUT: '0' }), (e: unknown) => e instanceof UsageError && /HF_HUB_DOWNLOAD_TIMEOUT must be a positive number/.test(e.message));
  assert.throws(() => hubTimeouts({ VIT_HUB_MIN_RATE: 'fast' }), UsageError);
});

test('hub limits: a model-info API that never answers fails after the metadata timeout, or falls back to the cache', { timeout: 30_000 }, async () => {
  await withHub([repo('acme/tiny-vit')], async (hub) => {
    const s = settings(hub, { timeouts: QUICK });
    await fetchModel('acme/tiny-vit', { settings: s });
    hub.stall.add('api');
    // With the model cached: served from the cache, with a note saying why.
    const notes: string[] = [];
    const cached = await within(5, () => fetchModel('acme/tiny-vit', { settings: s, note: (m) => notes.push(m) }));
    assert.deepEqual(cached.downloaded, []);
    assert.match(notes.join('\n'), /sent no answer within 0\.4 s \(HF_HUB_ETAG_TIMEOUT\).*using the cached snapshot/);
    // Without: one line naming the limit.
    await within(5, () => assert.rejects(fetchModel('acme/tiny-vit', { settings: settings(hub, { timeouts: QUICK }) }), (e: unknown) =>
      e instanceof ModelError && /accepted the connection but sent no answer within 0\.4 s \(HF_HUB_ETAG_TIMEOUT\)/.test(e.message) && !e.message.includes('\n')));
  });
});

test('hub limits: a body that stops mid-way ends after the idle timeout; the partial is kept and the next run resumes it', { timeout: 30_000 }, async () => {
  await withHub([repo('acme/tiny-vit')], async (hub) => {
    const s = settings(hub, { timeouts: QUICK });
    hub.stallAfter.set('model.safetensors', 1000);
    await within(5, () => assert.rejects(fetchModel('acme/tiny-vit', { settings: s }),
      /interrupted after 1000 of 300000 bytes \(.* sent nothing for 0\.4 s \(HF_HUB_DOWNLOAD_TIMEOUT\)\); run the command again to resume/));
    assert.equal(hub.bodyGets('model.safetensors').length, 1, 'a stalling server is not retried in the same run');
    assert.equal(statSync(`${blobOf(s, 'acme/tiny-vit', WEIGHTS)}.incomplete`).size, 1000);
    hub.stallAfter.clear();
    const r = await fetchModel('acme/tiny-vit', { settings: s });
    assert.equal(hub.bodyGets('model.safetensors').at(-1)!.headers.range, 'bytes=1000-');
    assert.equal(sha256(readFileSync(join(r.dir, 'model.safetensors'))), sha256(WEIGHTS));
  });
});

test('hub limits: a body trickling below the rate floor is stopped at the end of a window, partial kept', { timeout: 30_000 }, async () => {
  await withHub([repo('acme/tiny-vit')], async (hub) => {
    const s = settings(hub, { timeouts: QUICK });
    // 200 bytes every 50 ms: 4 kB/s, never idle for 0.4 s, but far below the 20 kB/s floor.
    hub.trickle.set('model.safetensors', { bytes: 200, everyMs: 50 });
    await within(5, () => assert.rejects(fetchModel('acme/tiny-vit', { settings: s }),
      /interrupted after \d+ of 300000 bytes \(.* slower than the floor of 20000 bytes\/s \(VIT_HUB_MIN_RATE, VIT_HUB_RATE_WINDOW\)\)/));
    const kept = statSync(`${blobOf(s, 'acme/tiny-vit', WEIGHTS)}.incomplete`).size;
    assert.ok(kept > 0 && kept < 300_000, String(kept));
  });
});

test('hub: a link planted under a download\'s .incomplete name (a cache shared between users) is replaced, never appended through', async () => {
  await withHub([repo('acme/tiny-vit')], async (hub) => {
    const s = settings(hub);
    const partial = `${blobOf(s, 'acme/tiny-vit', WEIGHTS)}.incomplete`;
    mkdirSync(dirname(partial), { recursive: true });
    const victim = join(s.cacheDir, 'victim');
    writeFileSync(victim, 'precious\n');
    symlinkSync(victim, partial);
    const r = await fetchModel('acme/tiny-vit', { settings: s });
    assert.equal(readFileSync(victim, 'utf8'), 'precious\n');
    assert.equal(hub.bodyGets('model.safetensors')[0].headers.range, undefined, 'the download starts from the first byte');
    assert.equal(sha256(readFileSync(join(r.dir, 'model.safetensors'))), sha256(WEIGHTS));
    assert.ok(!existsSync(partial));
  });
});

test('hub limits: a body larger than announced is cut off at the announced size, refused and not kept', { timeout: 30_000 }, async () => {
  await withHub([repo('acme/tiny-vit')], async (hub) => {
    // Chunked, so only counting tells: stopped while streaming, before the extra bytes are written.
    const s = settings(hub, { timeouts: QUICK });
    hub.overflow.set('model.safetensors', { extra: 200_000, announce: false });
    await within(5, () => assert.rejects(fetchModel('acme/tiny-vit', { settings: s }), (e: unknown) =>
      e instanceof ModelError && /model\.safetensors: the server sent more than the 300000 bytes it announced; stopped there, and the partial download was deleted/.test(e.message)));
    assert.ok(!existsSync(`${blobOf(s, 'acme/tiny-vit', WEIGHTS)}.incomplete`));
    assert.ok(!existsSync(blobOf(s, 'acme/tiny-vit', WEIGHTS)));
    // A Content-Length that contradicts the HEAD's X-Linked-Size: refused before a byte is written.
    const s2 = settings(hub, { timeouts: QUICK });
    hub.overflow.set('model.safetensors', { extra: 200_000, announce: true });
    await assert.rejects(fetchModel('acme/tiny-vit', { settings: s2 }), /the server announced 300000 bytes but this answer carries 500000; refused/);
    assert.ok(!existsSync(`${blobOf(s2, 'acme/tiny-vit', WEIGHTS)}.incomplete`));
  });
});

test('hub limits: through the CLI, a stalled hub is one line on stderr and exit 1, within seconds', { timeout: 30_000 }, async () => {
  await withHub([repo('acme/tiny-vit')], async (hub) => {
    hub.stall.add('api');
    const r = await within(10, () => runMain(['fetch', 'acme/tiny-vit'], { HF_ENDPOINT: hub.url, HF_HUB_CACHE: freshDir(), HF_HUB_ETAG_TIMEOUT: '0.4' }));
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /sent no answer within 0\.4 s \(HF_HUB_ETAG_TIMEOUT\)/);
  });
});

test('hub revisions: nested branch names and refs/pr/N are quoted as one path segment and kept nested under refs/', async () => {
  const revisions = ['feature/x', 'refs/pr/1'];
  await withHub([repo('acme/tiny-vit', { revisions })], async (hub) => {
    const s = settings(hub);
    for (const revision of revisions) {
      const r = await fetchModel('acme/tiny-vit', { settings: s, revision });
      assert.equal(r.commit, COMMIT);
      const api = hub.requests.filter((q) => q.path.startsWith('/api/models/')).at(-1)!;
      assert.ok(api.rawPath.endsWith(`/revision/${revision.replaceAll('/', '%2F')}`), api.rawPath);
      assert.equal(readFileSync(join(repoDir(s, 'acme/tiny-vit'), 'refs', ...revision.split('/')), 'utf8'), COMMIT);
    }
    // Offline, each revision resolves from its ref file, as huggingface_hub reads them.
    const offline = { ...s, offline: true };
    for (const revision of revisions) {
      assert.equal(await resolveHubModel(`acme/tiny-vit@${revision}`, { settings: offline }), join(repoDir(s, 'acme/tiny-vit'), 'snapshots', COMMIT));
    }
    const cli = await runMain(['fetch', 'acme/tiny-vit', '--revision', 'feature/x', '--quiet'], { HF_ENDPOINT: hub.url, HF_HUB_CACHE: s.cacheDir });
    assert.equal(cli.code, 0, cli.stderr);
    for (const bad of ['feature//x', 'feature/.x', 'feature/', '../x']) assert.throws(() => parseHubId('acme/x', bad), UsageError, bad);
  });
});

test('hub limits: a config.json announced larger than any config is not downloaded', async () => {
  const huge = new Uint8Array(16 * 2 ** 20 + 1).fill(0x20);
  await withHub([repo('acme/huge-config', {}, [{ name: 'config.json', body: huge }, { name: 'model.safetensors', body: WEIGHTS }])], async (hub) => {
    await assert.rejects(fetchModel('acme/huge-config', { settings: settings(hub) }),
      /acme\/huge-config@main\/config\.json: the hub announces 16777217 bytes, more than the 16777216 such a file can have; not downloaded/);
    assert.equal(hub.bodyGets('config.json').length, 0);
  });
});

test('hub: a model-info answer of the wrong shape is a clear error, not a TypeError', async () => {
  const answers: unknown[] = [
    { sha: COMMIT, siblings: 5 },
    { sha: COMMIT, siblings: [{ rfilename: 'config.json' }, { name: 'model.safetensors' }] },
    { sha: COMMIT, siblings: 'config.json' },
  ];
  for (const answer of answers) {
    const server = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      await assert.rejects(fetchModel('acme/odd', { settings: { cacheDir: freshDir(), endpoint, token: null, offline: false } }), (e: unknown) =>
        e instanceof ModelError && /^the hub's model info for acme\/odd@main (is not in the form|has no list of file names)/.test(e.message));
    } finally {
      await new Promise((r) => server.close(r));
    }
  }
});

test('hub: a FIFO as the token file or a ref of the cache is passed over, not waited on', () => {
  const home = freshDir();
  execFileSync('mkfifo', [join(home, 'token')]);
  const refs = join(home, 'hub', 'models--org--name', 'refs');
  mkdirSync(refs, { recursive: true });
  execFileSync('mkfifo', [join(refs, 'main')]);
  // A child, killed if it hangs (a blocked read would stop this process's timers too).
  const r = spawnSync(process.execPath, [VIT_BIN, 'fetch', 'org/name'], {
    env: { PATH: process.env.PATH, HF_HOME: home, HF_HUB_OFFLINE: '1' }, encoding: 'utf8', timeout: 30_000,
  });
  assert.equal(r.signal, null, 'vit fetch hung');
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /^vit: offline \(HF_HUB_OFFLINE is set\) and not in cache: org\/name@main/);
});
