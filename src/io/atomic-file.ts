/**
 * Files written whole: the manifest beside an output, heatmaps, exported model folders, the graph cache's
 * entries, the hub cache's refs, remembered checkpoint hashes. Each is written under a temporary name and
 * renamed over its path, so that a reader never sees half a file.
 *
 * A temporary file is always created anew (O_EXCL), after removing whatever has its name: its name is
 * predictable (the process id), and in a shared directory someone else may have put a symbolic link there;
 * opening it for writing the usual way (O_CREAT|O_TRUNC) would write through the link into its target, as root
 * any file. Removing the name removes the link, never its target. (Outputs streamed with -o do the same in
 * sinks/target.ts.)
 */
import { closeSync, ftruncateSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';

/** A file's content: bytes or text, or chunks at their offsets (never all in memory at once). */
export type FileContent =
  | { bytes: Uint8Array | string }
  | { size: number; chunks: Iterable<{ offset: number; bytes: Uint8Array }> };

/** Create path (it must not exist: EEXIST otherwise, even for a dangling link) and write content; returns its size. */
export function writeNewFile(path: string | Buffer, content: FileContent): number {
  const fd = openSync(path, 'wx');
  try {
    if ('bytes' in content) {
      const bytes = typeof content.bytes === 'string' ? Buffer.from(content.bytes) : content.bytes;
      for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at, bytes.length - at);
      return bytes.length;
    }
    for (const c of content.chunks) {
      for (let at = 0; at < c.bytes.length; ) at += writeSync(fd, c.bytes, at, c.bytes.length - at, c.offset + at);
    }
    ftruncateSync(fd, content.size);
    return content.size;
  } finally {
    closeSync(fd);
  }
}

/** `PATH.PID.tmp`: a name of this process's own beside path (a Buffer path: a name not valid UTF-8). */
function besidePath(path: string | Buffer): string | Buffer {
  const suffix = `.${process.pid}.tmp`;
  return typeof path === 'string' ? path + suffix : Buffer.concat([path, Buffer.from(suffix)]);
}

/**
 * Replace path with content through the temporary name tmp (default `PATH.PID.tmp`, beside it). On failure
 * the temporary file is removed and the error thrown as it came.
 */
export function replaceFile(path: string | Buffer, content: FileContent, tmp: string | Buffer = besidePath(path)): void {
  try {
    rmSync(tmp, { force: true });
    writeNewFile(tmp, content);
    renameSync(tmp, path);
  } catch (e) {
    try {
      rmSync(tmp, { force: true });
    } catch {
      // The cleanup must not hide the reason (with a file where a folder should be, it fails too: ENOTDIR).
    }
    throw e;
  }
}
