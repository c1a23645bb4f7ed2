/**
 * Tar archives among a run's inputs: each is replaced by its image members (`TARPATH/MEMBER`), and each input
 * is then loaded from where its bytes are — its own file, or its archive's stream.
 *
 * How the pipeline learns member names: two passes over each archive. The first (expandTars) reads it
 * through once, keeping the names and dropping the data; the second (InputLoader) streams it again while the
 * batches are decoded, handing each member's bytes to a decoding thread. Chosen over streaming the names
 * through the pipeline as they are found because everything after the input list keeps working unchanged
 * on a known, ordered list: the progress total, --resume's skip list, `vit merge --inputs`' check that every
 * input has its row, the shard and failure counts. The price is reading each archive twice; the first read
 * decodes nothing (it runs at the speed of the disk or the page cache) and is small beside decoding and
 * inference. tar-stream cannot seek, so that read goes through the data rather than skipping it. Listing
 * happens after --shard has cut the inputs, so a shard task reads only its own archives.
 */
import { stat } from 'node:fs/promises';
import { InputError } from '../errors.js';
import { fsPath } from './fs-names.js';
import { imageExtensions } from './inputs.js';
import type { PreprocessPool } from './preprocess-pool.js';
import { ByteBudget, isTarName, listTar, TarReader } from './tar.js';

export interface RunInputs {
  /** Every input in order: files as collected, each archive replaced by its image members. */
  paths: string[];
  /** The archives that were listed (their members are among the paths). */
  tars: ReadonlySet<string>;
  /** Inputs known to fail already: an archive that could not be read, by its own path, with the reason. */
  failed: ReadonlyMap<string, string>;
}

/** Archives listed at once: reads that wait on a network file system overlap. */
const LIST_CONCURRENCY = 4;

async function isRegularFile(path: string): Promise<boolean> {
  return stat(fsPath(path)).then((st) => st.isFile(), () => false);
}

/**
 * The inputs with each tar archive (a regular file named *.tar, *.tar.gz, *.tgz) replaced by its image
 * members, in archive order. An archive that cannot be read to its end keeps the members listed before the
 * problem; the problem is an error row: the cut-off member's, or else one for the archive itself. Anything
 * else (and a missing or unreadable "archive") stays as it is, to be loaded as a file.
 */
export async function expandTars(inputs: readonly string[]): Promise<RunInputs> {
  const tars = new Set<string>();
  const failed = new Map<string, string>();
  const candidates = inputs.filter(isTarName);
  if (candidates.length === 0) return { paths: [...inputs], tars, failed };
  const extensions = new Set(imageExtensions());
  const listings = new Map<string, string[]>();
  for (let i = 0; i < candidates.length; i += LIST_CONCURRENCY) {
    await Promise.all(candidates.slice(i, i + LIST_CONCURRENCY).map(async (tar) => {
      if (!(await isRegularFile(tar))) return;
      const listing = await listTar(tar, extensions);
      tars.add(tar);
      const members = listing.members;
      if (listing.error !== null && !listing.inMember) {
        failed.set(tar, listing.error);
        members.push(tar);
      }
      listings.set(tar, members);
    }));
  }
  const paths: string[] = [];
  // One at a time: push(...members) passes each as an argument, past V8's stack beyond about 125,000 of them.
  for (const p of inputs) for (const q of listings.get(p) ?? [p]) paths.push(q);
  return { paths, tars, failed };
}

/** The archive a member input belongs to, and the member's name in it; null for any other input. */
function memberOf(path: string, tars: ReadonlySet<string>): { tar: string; member: string } | null {
  if (tars.size === 0) return null;
  for (let i = path.indexOf('/', 1); i !== -1; i = path.indexOf('/', i + 1)) {
    const tar = path.slice(0, i);
    if (tars.has(tar)) return { tar, member: path.slice(i + 1) };
  }
  return null;
}

/**
 * Bytes of members read ahead of decoding, over all archives: enough for the batches decoded ahead at any
 * batch size of photos, bounded whatever the members hold.
 */
const MEMBER_BYTES_AHEAD = 512 * 2 ** 20;

/**
 * Loads each input of a run into its place in a batch: a file through the decoding pool, a tar member by
 * reading it from its archive (one stream per archive, opened when its first member is asked for, closed
 * after its last) and handing its bytes to the pool. The batches ask for inputs in order, which is the
 * archives' order, so each archive is read once, front to back.
 */
export class InputLoader {
  private readonly readers = new Map<string, TarReader>();
  private readonly budget = new ByteBudget(MEMBER_BYTES_AHEAD);

  /** `paths`: the inputs this run will load (after --resume left out those done), in order. */
  constructor(private readonly pool: PreprocessPool, private readonly inputs: RunInputs, paths: readonly string[]) {
    const counts = new Map<string, number>();
    for (const p of paths) {
      const m = this.inputs.failed.has(p) ? null : memberOf(p, inputs.tars);
      if (m !== null) counts.set(m.tar, (counts.get(m.tar) ?? 0) + 1);
    }
    for (const [tar, n] of counts) this.readers.set(tar, new TarReader(tar, n, this.budget));
  }

  /** As PreprocessPool.load: null, or the reason the input failed. */
  async load(path: string, pixels: Float32Array, offset: number): Promise<string | null> {
    const failed = this.inputs.failed.get(path);
    if (failed !== undefined) return failed;
    const m = memberOf(path, this.inputs.tars);
    if (m === null) return this.pool.load(path, pixels, offset);
    let bytes: Uint8Array;
    try {
      bytes = await this.readers.get(m.tar)!.read(m.member);
    } catch (e) {
      if (e instanceof InputError) return e.message;
      throw e;
    }
    const size = bytes.byteLength;
    try {
      return await this.pool.decode(path, bytes, pixels, offset);
    } finally {
      this.budget.release(size);
    }
  }

  close(): void {
    for (const r of this.readers.values()) r.close();
  }
}
