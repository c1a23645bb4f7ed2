/** Tar archives for tests, written with tar-stream's packer (not the tar under test's reader). */
import { writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import tarStream from 'tar-stream';

export interface TarEntry {
  name: string;
  data?: Buffer;
  type?: 'file' | 'directory' | 'symlink';
  linkname?: string;
}

/** The bytes of a tar (gzip-compressed with `gzip`) holding the entries in order. */
export async function tarBytes(entries: TarEntry[], gzip = false): Promise<Buffer> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => {
    chunks.push(c as Buffer);
  });
  const done = new Promise<void>((res, rej) => {
    pack.on('end', () => res());
    pack.on('error', rej);
  });
  for (const e of entries) {
    const type = e.type ?? 'file';
    await new Promise<void>((res, rej) => {
      const cb = (err?: Error | null) => (err ? rej(err) : res());
      if (type === 'file') pack.entry({ name: e.name, type }, e.data ?? Buffer.alloc(0), cb);
      else pack.entry({ name: e.name, type, linkname: e.linkname }, cb);
    });
  }
  pack.finalize();
  await done;
  const tar = Buffer.concat(chunks);
  return gzip ? gzipSync(tar) : tar;
}

export async function writeTar(file: string, entries: TarEntry[], gzip = false): Promise<void> {
  writeFileSync(file, await tarBytes(entries, gzip));
}

/** Where member `name`'s data starts in an uncompressed tar written by tarBytes (after its 512-byte header). */
export function dataOffset(tar: Buffer, name: string): number {
  for (let at = 0; at + 512 <= tar.length;) {
    const header = tar.subarray(at, at + 512);
    const entryName = header.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
    const size = parseInt(header.subarray(124, 136).toString('ascii').replace(/\0.*$/s, '').trim() || '0', 8);
    if (entryName === name) return at + 512;
    at += 512 + Math.ceil(size / 512) * 512;
  }
  throw new Error(`${name} is not in the tar`);
}

/** A copy of the tar with member `name`'s header claiming `size` bytes (its checksum recomputed). */
export function withSize(tar: Buffer, name: string, size: number): Buffer {
  const out = Buffer.from(tar);
  const at = dataOffset(out, name) - 512;
  out.write(`${size.toString(8).padStart(11, '0')}\0`, at + 124, 'ascii');
  out.fill(0x20, at + 148, at + 156);
  let sum = 0;
  for (let i = at; i < at + 512; i++) sum += out[i];
  out.write(`${sum.toString(8).padStart(6, '0')}\0 `, at + 148, 'ascii');
  return out;
}
