/**
 * Execution settings as tables: which onnxruntime execution providers a device means, and what it takes to
 * have them. Whether a device's binaries are present is asked of the caller (src/io), which may look at the
 * file system; this side only names what is needed.
 */
import { ModelError } from '../../errors.js';
import type { Device } from './engine.js';

interface DeviceRow {
  /** onnxruntime execution providers, in order of preference. */
  providers: string[];
  /** What a user must install when the device's provider is missing (one line). */
  install: string | null;
}

export const DEVICE_TABLE: Record<Device, DeviceRow> = {
  cpu: { providers: ['cpu'], install: null },
  // No CPU fallback: a run asked for the GPU must not quietly take the CPU instead.
  cuda: {
    providers: ['cuda'],
    install: "reinstall with onnxruntime-node's CUDA 12 binaries: ONNXRUNTIME_NODE_INSTALL=cuda12 npm install -g vit-cli " +
      '(needs network access beyond the npm registry, and an NVIDIA driver with CUDA 12)',
  },
};

export function providersFor(device: Device): string[] {
  return DEVICE_TABLE[device].providers;
}

/** The one-line error for a device whose provider binaries are not installed. */
export function deviceMissing(device: Device): ModelError {
  return new ModelError(`--device ${device}: onnxruntime-node's ${device.toUpperCase()} provider is not installed; ${DEVICE_TABLE[device].install}`);
}
