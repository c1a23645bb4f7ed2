import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { createBar, escapeControls, progressEnabled } from '../src/io/progress.js';

/** A stream that can claim to be a terminal. */
function fakeTerminal(isTTY: boolean): { stream: PassThrough & { isTTY?: boolean; columns?: number }; text(): string } {
  const stream = Object.assign(new PassThrough(), { isTTY, columns: 100 });
  let text = '';
  stream.on('data', (d: Buffer) => (text += d.toString('utf8')));
  return { stream, text: () => text };
}

const settle = () => new Promise((r) => setImmediate(r));

test('progress: only on a terminal, not under CI, not with --quiet, not when stdout is the same terminal', () => {
  const tty = fakeTerminal(true).stream;
  assert.equal(progressEnabled({ stderr: tty, quiet: false, env: {} }), true);
  assert.equal(progressEnabled({ stderr: tty, quiet: true, env: {} }), false);
  assert.equal(progressEnabled({ stderr: tty, quiet: false, env: { CI: 'true' } }), false);
  assert.equal(progressEnabled({ stderr: tty, quiet: false, env: { CI: '1' } }), false);
  assert.equal(progressEnabled({ stderr: fakeTerminal(false).stream, quiet: false, env: {} }), false);
  // Rows on the same terminal: a terminal stdout without a known device counts as the same one.
  assert.equal(progressEnabled({ stderr: tty, stdout: fakeTerminal(true).stream, quiet: false, env: {} }), false);
  assert.equal(progressEnabled({ stderr: tty, stdout: fakeTerminal(false).stream, quiet: false, env: {} }), true);
});

test('progress: draws done/total, rate and ETA; notes go above it and the bar is drawn again below', async () => {
  const tty = fakeTerminal(true);
  const notes: string[] = [];
  const write = (m: string) => {
    notes.push(m);
    tty.stream.write(`vit: ${m}\n`);
  };
  const p = createBar(10, { stderr: tty.stream, quiet: false, env: {}, unit: 'images', write });
  p.tick(4);
  p.note('a.jpg: not an image');
  p.stop();
  p.stop();
  await settle();
  const text = tty.text();
  assert.match(text, /images\/s/);
  assert.match(text, /ETA/);
  // The note is on a line of its own (the bar cleared before it), and the bar comes back after it.
  assert.match(text, /\r\x1b\[2Kvit: a\.jpg: not an image\n\r\x1b\[2K.*4\/10/);
  assert.ok(text.endsWith('\r\x1b[2K'), 'the bar is removed at the end');
  assert.deepEqual(notes, ['a.jpg: not an image']);

  const pipe = fakeTerminal(false);
  const q = createBar(10, { stderr: pipe.stream, quiet: false, env: {}, unit: 'images', write: (m) => pipe.stream.write(`${m}\n`) });
  q.tick(10);
  q.note('plain');
  q.stop();
  await settle();
  assert.equal(pipe.text(), 'plain\n');
});

test('notes escape control characters in file names', () => {
  assert.equal(escapeControls('evil\x1b[2Jname\n.jpg'), 'evil\\x1b[2Jname\\n.jpg');
  assert.equal(escapeControls('tab\there'), 'tab\\there');
  assert.equal(escapeControls('plain ünï.jpg'), 'plain ünï.jpg');
});
