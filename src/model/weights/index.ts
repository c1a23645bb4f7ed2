/**
 * Registers every checkpoint format beyond the built-in safetensors. Import once for its effect before
 * reading weights.
 */
import { registerFormat } from './formats.js';
import { isNpz, readNpz } from './npz.js';
import { isTorchLegacy, isTorchZip, readTorchLegacy, readTorchZip } from './torch-zip.js';
import { isZip, readZip, type ZipArchive } from './zip.js';

/** Each sniff and the read that follows would parse the same central directory; keep it per buffer. */
const parsed = new WeakMap<Uint8Array, ZipArchive>();
function zipOf(bytes: Uint8Array, fileName: string): ZipArchive {
  let z = parsed.get(bytes);
  if (!z) {
    z = readZip(bytes, fileName);
    parsed.set(bytes, z);
  }
  return z;
}

// registerFormat puts the newest first: the torch sniff runs before npz, both before safetensors.
registerFormat({
  name: 'npz',
  sniff: (b, f) => isZip(b) && isNpz(zipOf(b, f)),
  read: (b, f, budget) => readNpz(zipOf(b, f), f, budget),
});

registerFormat({
  name: 'pytorch',
  sniff: (b, f) => isTorchLegacy(b) || (isZip(b) && isTorchZip(zipOf(b, f))),
  read: (b, f, budget) => (isTorchLegacy(b) ? readTorchLegacy(b, f, budget) : readTorchZip(zipOf(b, f), f, budget)),
});
