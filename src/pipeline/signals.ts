import { constants as osConstants } from 'node:os';
import { removeTempFiles } from '../io/sinks/target.js';

/** Exit statuses of a run stopped by a signal: 128 + the signal's number, as a shell reports it. */
export const STOP_SIGNALS = { SIGINT: 128 + osConstants.signals.SIGINT, SIGTERM: 128 + osConstants.signals.SIGTERM } as const;
export type StopSignal = keyof typeof STOP_SIGNALS;

export interface StopSignals {
  /** The signal that asked for a stop, if one did. */
  caught(): StopSignal | null;
  release(): void;
}

/**
 * Catch SIGINT / SIGTERM for the length of a run. The first asks for a clean stop (the batch in flight is
 * finished, rows flushed, files closed validly); a second one ends the process at once, as an impatient
 * user wants (temporary files are removed first; an in-place --resume file keeps its rows).
 */
export function catchStopSignals(note: (m: string) => void): StopSignals {
  let caught: StopSignal | null = null;
  const handler = (sig: StopSignal) => {
    if (caught !== null) {
      // Ended by the signal itself (the shell reports 128 + its number), not by process.exit: exit() would
      // tear the process down while onnxruntime's worker may be finishing a run, and its addon then aborts
      // the process (seen 1 time in 40). With no listener left the signal's default action applies.
      removeTempFiles();
      for (const s of Object.keys(STOP_SIGNALS)) process.removeAllListeners(s);
      process.kill(process.pid, sig);
      return;
    }
    caught = sig;
    note(`${sig}: finishing the batch in flight, then stopping (again to stop at once)`);
  };
  for (const sig of Object.keys(STOP_SIGNALS) as StopSignal[]) process.on(sig, handler);
  return {
    caught: () => caught,
    release: () => {
      for (const sig of Object.keys(STOP_SIGNALS) as StopSignal[]) process.off(sig, handler);
    },
  };
}
