/**
 * Child process for the closed-pipe test: writes classify rows to stdout through a real writer until the
 * reader goes away, then reports on stderr how it ended. Run as `node epipe-writer.js FORMAT | head -1`.
 */
import { testWriter } from './formats.js';

const MAX_ROWS = 200_000;

async function run(): Promise<void> {
  const writer = await testWriter('classify', process.argv[2] ?? 'jsonl', { stdout: process.stdout });
  let rows = 0;
  for (; rows < MAX_ROWS && !writer.closedByReader; rows++) {
    await writer.write({ path: `dir/image_${rows}.jpg`, predictions: [{ index: rows % 1000, label: 'tabby, tabby cat', score: 0.5, logit: 1.25 }] });
  }
  await writer.close();
  process.stderr.write(`closedByReader=${writer.closedByReader} rows=${rows}\n`);
}

run().catch((e: unknown) => {
  process.stderr.write(`failed: ${(e as Error).stack}\n`);
  process.exitCode = 1;
});
