/** What a run gets from the CLI (or a library caller): its streams and the stderr loggers the shared flags control. */
export interface Context {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** --quiet: no notes and no progress bar on stderr. */
  quiet: boolean;
  /** Human notes (warnings, per-file errors, summaries); silenced by --quiet. */
  note(msg: string): void;
  /** Details under --verbose: engine, backend, timings. */
  verbose(msg: string): void;
}
