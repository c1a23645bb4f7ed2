import { UsageError } from '../errors.js';
import { collectInputs, uniquePaths } from '../io/inputs.js';
import { mergeOutputs } from '../io/sinks/index.js';
import { expandTars } from '../io/tar-inputs.js';
import { FORMATS, type Format } from '../io/sinks/rows.js';
import type { Context } from '../pipeline/context.js';
import type { CommandBody } from './options.js';

interface MergeArgs {
  output: string;
  parts: string[];
  format?: string;
  inputs?: string[];
  null: boolean;
}

/** The format named by a file's extension (.csv, .json, .jsonl / .ndjson, .npy), if any. */
function formatOf(file: string): Format | undefined {
  const ext = /\.([^./]+)$/.exec(file)?.[1].toLowerCase();
  if (ext === 'ndjson') return 'jsonl';
  return (FORMATS as readonly string[]).includes(ext ?? '') ? (ext as Format) : undefined;
}

export function mergeCommand(ctx: Context): CommandBody {
  return {
    builder: (y) => y
      .positional('output', { type: 'string', describe: 'the merged file (- for stdout; npy needs a file, its paths file goes beside it)' })
      .positional('parts', { type: 'string', array: true, describe: 'the shard outputs (npy: each with its .paths.txt beside it)' })
      .option('format', { alias: 'f', type: 'string', choices: FORMATS, describe: 'the output\'s format (default: from its extension)' })
      .option('inputs', {
        type: 'string', array: true,
        describe: 'the inputs the shards were given (as given to them: files, directories, globs, tar archives, - for a list on stdin): rows follow their order and must cover them exactly. Without it rows are sorted by path (byte order)',
      })
      .option('null', { alias: '0', type: 'boolean', default: false, describe: 'with --inputs -: the list on stdin is NUL-separated' })
      .example('$0 merge labels.csv parts/labels-*.csv', 'rows sorted by path')
      .example('$0 merge feats.npy parts/*.npy --inputs photos/', 'in the order of the run over photos/, checking none is missing'),
    handler: async (argv) => {
      const a = argv as unknown as MergeArgs;
      const format = (a.format as Format | undefined) ?? formatOf(a.output) ?? formatOf(a.parts[0]);
      if (format === undefined) throw new UsageError(`cannot tell the format from "${a.output}": name it with -f (${FORMATS.join(', ')})`);
      const listed = a.inputs === undefined
        ? undefined
        : await expandTars(uniquePaths(await collectInputs(a.inputs, { stdin: process.stdin, stdinIsTTY: process.stdin.isTTY === true, nul: a.null })).paths);
      const inputs = listed?.paths;
      const inputFiles = listed === undefined ? undefined : [...listed.tars, ...listed.paths];
      // yargs hands a positional `-` to a string option as ''.
      const output = a.output === '' ? '-' : a.output;
      const rows = await mergeOutputs(a.parts, { format, output, stdout: ctx.stdout, inputs, inputFiles, note: ctx.note });
      ctx.verbose(`merged ${rows} rows from ${a.parts.length} parts into ${a.output}`);
    },
  };
}
