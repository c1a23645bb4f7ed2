import { createRequire } from 'node:module';
import type YargsFactory from 'yargs';
import type { CommandModule } from 'yargs';
import { enableHubModels } from './commands/fetch.js';
import type { CommandBody } from './commands/options.js';
import { UsageError, VitError } from './errors.js';
import { ExitStatus } from './exit.js';
import { closeLiveResources } from './model/engines/live.js';
import { escapeControls } from './io/progress.js';
import { writeError } from './io/sinks/target.js';
import { isBrokenPipe } from './io/streams.js';
import { toolVersion } from './io/paths.js';
import type { Context } from './pipeline/context.js';


// yargs' CommonJS build: its ES module build wraps help text by characters, splitting words mid-way.
const yargs = createRequire(import.meta.url)('yargs') as typeof YargsFactory;

/** A command as `vit --help` lists it, and the module with the rest of it (options, examples, handler). */
interface CommandEntry {
  command: string;
  describe: string;
  load(): Promise<(ctx: Context) => CommandBody>;
}

/**
 * The commands. A command's module is loaded only when that command runs or shows its help: together they
 * bring most of the tool (image decoding, input walking, the engines' front end), which neither `vit --help`
 * nor a run of one command needs all of.
 */
const COMMANDS: CommandEntry[] = [
  {
    command: 'classify [inputs..]', describe: 'Top-k classes per image',
    load: async () => (await import('./commands/classify.js')).classifyCommand,
  },
  {
    command: 'embed [inputs..]', describe: 'One feature vector per image',
    load: async () => (await import('./commands/embed.js')).embedCommand,
  },
  {
    command: 'attention [inputs..]', describe: 'Attention maps: rollout, raw probabilities, distance, heatmaps',
    load: async () => (await import('./commands/attention.js')).attentionCommand,
  },
  {
    command: 'summary [model]', describe: 'Layers, parameters, MACs and weight size of a model',
    load: async () => (await import('./commands/summary.js')).summaryCommand,
  },
  {
    command: 'export <outdir>', describe: 'Write a model as an ONNX folder for transformers.js and other runtimes',
    load: async () => (await import('./commands/export.js')).exportCommand,
  },
  {
    command: 'fetch <model>', describe: 'Download a model from the Hugging Face Hub into its cache',
    load: async () => (await import('./commands/fetch.js')).fetchCommand,
  },
  {
    command: 'merge <output> <parts..>', describe: 'Join shard outputs (--shard K/N) into one',
    load: async () => (await import('./commands/merge.js')).mergeCommand,
  },
];

/** The yargs command of an entry: its builder loads the module first (yargs awaits a builder's promise). */
function lazyCommand(entry: CommandEntry, ctx: Context): CommandModule {
  let body: Promise<CommandBody> | null = null;
  const load = () => (body ??= entry.load().then((factory) => factory(ctx)));
  return {
    command: entry.command,
    describe: entry.describe,
    builder: async (y) => {
      const { builder } = await load();
      const built = await (typeof builder === 'function' ? builder(y) : y.options(builder ?? {}));
      // An option that takes one value must be given one, and given twice (`-m B/16 … -m B/32`, as a wrapper
      // script adds to a user's line) the last counts, as in most Unix tools: yargs otherwise reads `-f` at the
      // end of a line as '' (then the default), `--threads` as absent, and a repeated option as a list that
      // the command then fails on. Not for positionals (<outdir>, [inputs..]) nor options that take a list.
      const positional = new Set([...entry.command.matchAll(/[<[]([^\]>.]+)/g)].map((m) => m[1]));
      // getOptions() is yargs' own record of declared options (not in its type declarations).
      const o = (built as unknown as { getOptions(): Record<'string' | 'number' | 'array', string[]> }).getOptions();
      const list = new Set(o.array);
      const single = [...o.string, ...o.number].filter((k) => !positional.has(k) && !list.has(k));
      return built.requiresArg(single).coerce(single, (v: unknown) => (Array.isArray(v) ? v[v.length - 1] : v));
    },
    handler: async (argv) => (await load()).handler(argv),
  };
}

/** A command's positional slots as its usage line declares them: `[x]` optional, `<x>` required, `x..` a list. */
function slotsOf(command: string): { name: string; optional: boolean; list: boolean }[] {
  return command.split(' ').slice(1).map((s) => ({ name: s.slice(1, -1).replace(/\.\.$/, ''), optional: s.startsWith('['), list: s.endsWith('..]') || s.endsWith('..>') }));
}

/**
 * The words after `--` (yargs keeps them apart) are operands, as for any Unix tool (`vit classify -- -x.png`,
 * `xargs -0 vit classify --`): they fill the command's positional slots in order (a list takes the rest);
 * more than the slots take is the usual usage error.
 */
function operandsAfterDashes(argv: Record<string, unknown>): void {
  const rest = argv['--'];
  delete argv['--'];
  if (!Array.isArray(rest) || rest.length === 0) return;
  const words = rest.map(String);
  const entry = COMMANDS.find((c) => c.command.split(' ')[0] === String((argv._ as unknown[])[0]));
  for (const { name, list } of entry ? slotsOf(entry.command) : []) {
    if (list) argv[name] = [...(Array.isArray(argv[name]) ? argv[name] as string[] : []), ...words.splice(0)];
    else if (argv[name] === undefined && words.length > 0) argv[name] = words.shift();
  }
  if (words.length > 0) throw new UsageError(`vit ${entry?.command ?? String((argv._ as unknown[])[0])} does not take "${words[0]}" after --`);
}

/**
 * yargs reads a number option given as text (`--threads abc`) as NaN, which the checks after it would quote as
 * "NaN": refuse it here, quoting what was typed.
 */
function refuseNonNumbers(args: string[], argv: Record<string, unknown>): void {
  const nan = new Set(Object.keys(argv).filter((k) => typeof argv[k] === 'number' && Number.isNaN(argv[k])));
  if (nan.size === 0) return;
  // From the end: a repeated option's last value is the one taken.
  const end = args.includes('--') ? args.indexOf('--') : args.length;
  for (let i = end - 1; i >= 0; i--) {
    const m = /^(--?)([^=]+)(?:=(.*))?$/.exec(args[i]);
    if (!m || !nan.has(m[2])) continue;
    throw new UsageError(`${m[1]}${m[2]} takes a number, not "${m[3] ?? args[i + 1] ?? ''}"`);
  }
  // Not found as typed (inside a group of short flags, -qb x): the option's longest name.
  throw new UsageError(`--${[...nan].sort((x, y) => y.length - x.length)[0]} takes a number`);
}

/**
 * yargs' message for a value outside an option's choices spans lines ("Invalid values:", then one
 * "Argument: format, Given: "xml", Choices: "csv", …" per option): one line per option instead.
 */
function choicesMessage(msg: string): string | null {
  const lines = msg.split('\n').slice(1).map((l) => /^\s*Argument: ([^,]+), Given: (.*), Choices: (.*)$/.exec(l));
  if (!msg.startsWith('Invalid values:') || lines.length === 0 || lines.some((m) => !m)) return null;
  return lines.map((m) => `--${m![1]} is one of ${m![3]}, not ${m![2]}`).join('; ');
}

/** A message of yargs' own (its errors are named YError) as the usage error the CLI reports. */
function yargsUsage(text: string, args: string[]): UsageError {
  const option = /^Not enough arguments following: (.+)$/.exec(text)?.[1];
  if (option) return new UsageError(`${option.length === 1 ? '-' : '--'}${option} needs a value`);
  const entry = COMMANDS.find((c) => c.command.split(' ')[0] === args.find((x) => !x.startsWith('-')));
  const counts = /^Not enough non-option arguments: got (\d+), need at least (\d+)/.exec(text);
  if (entry && counts) return new UsageError(`vit ${entry.command}: ${counts[1] === '0' ? 'no arguments' : `${counts[1]} argument${counts[1] === '1' ? '' : 's'}`}, at least ${counts[2]} needed`);
  return (entry && tooManyArguments(entry.command, text, args)) ?? new UsageError(choicesMessage(text) ?? text);
}

/**
 * yargs' "Unknown arguments: o1, o2" when they are arguments beyond what a command takes (`vit export MODEL
 * OUT`, the model given where the folder goes): how many it takes, and for export where the model goes.
 */
function tooManyArguments(command: string, text: string, args: string[]): UsageError | null {
  const listed = /^Unknown arguments?: (.+)$/.exec(text)?.[1].split(', ');
  const words = args.filter((x) => !x.startsWith('-'));
  const slots = slotsOf(command);
  if (!listed || slots.some((x) => x.list) || !listed.every((x) => words.includes(x))) return null;
  // yargs fills the command's own slots first and lists what is left.
  const given = slots.length + listed.length;
  const most = slots.some((x) => x.optional) ? 'at most ' : '';
  const noModel = command.startsWith('export ') && !args.some((x) => /^(-m|--model)(=|$)/.test(x));
  return new UsageError(`vit ${command} takes ${most}${slots.length} argument${slots.length === 1 ? '' : 's'}, not ${given}` +
    (noModel ? ' (the model goes with -m: vit export -m MODEL OUTDIR)' : ''));
}

/** Run the CLI; resolves to the process exit status. */
export async function main(args: string[], stdout: NodeJS.WritableStream, stderr: NodeJS.WritableStream): Promise<number> {
  // Options come before `--`: a file named -v after it is an input.
  const dashes = args.indexOf('--');
  const options = dashes >= 0 ? args.slice(0, dashes) : args;
  const flags = { verbose: options.includes('--verbose') || options.includes('-v'), quiet: options.includes('--quiet') || options.includes('-q') };
  const ctx: Context = {
    stdout,
    stderr,
    quiet: flags.quiet,
    // What reaches the terminal is escaped here, once: names and messages come from files (a config's
    // model_type, a checkpoint's tensor names, a JSON parser quoting the file), which must not drive it.
    note: (m) => { if (!flags.quiet) stderr.write(`vit: ${escapeControls(m, true)}\n`); },
    verbose: (m) => { if (flags.verbose) stderr.write(`vit: ${escapeControls(m, true)}\n`); },
  };
  enableHubModels(ctx);
  // A reader that goes away (`| head -1`) is a normal end, not an error. Other stdout errors (a full disk)
  // end the run with one line: from the run's sink when a run writes, else here.
  let pipeClosed = false;
  let stdoutError: Error | null = null;
  stdout.on('error', (e) => {
    if (isBrokenPipe(e)) pipeClosed = true;
    else stdoutError ??= e;
  });
  // A closed stderr (`2>&1 | head -1`, a terminal gone) must not end the run: notes are then lost, not fatal.
  stderr.on('error', () => undefined);

  // Operands after `--` that do not look like options are read as plain arguments (so required slots take
  // them); those that do are given to the command's slots by operandsAfterDashes.
  const parsed = dashes >= 0 && args.slice(dashes + 1).every((x) => !/^-./.test(x)) ? [...args.slice(0, dashes), ...args.slice(dashes + 1)] : args;
  const cli = yargs(parsed)
    .scriptName('vit')
    .usage('$0 <command> [options]\n\nRun Vision Transformers over images: classify, embed, attention maps, model summaries.')
    .option('verbose', { alias: 'v', type: 'boolean', default: false, describe: 'say which engine and backend ran, with timings' })
    .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'no notes on stderr' })
    .strict()
    .demandCommand(1, 'name a command, e.g. `vit classify photos/`')
    .recommendCommands()
    .help()
    .alias('h', 'help')
    .version(toolVersion())
    .wrap(Math.min(100, process.stdout.columns ?? 100))
    .exitProcess(false)
    .fail((msg, err) => {
      // yargs' suggestion alone ("Did you mean classify?") does not say what was wrong.
      const word = args.find((x) => !x.startsWith('-'));
      const names = COMMANDS.map((c) => c.command.split(' ')[0]);
      if (!err && word !== undefined && !names.includes(word)) {
        if (/^Did you mean /.test(msg)) throw new UsageError(`unknown command "${word}". ${msg}`);
        if (/^Unknown arguments?: ([^,]*)/.exec(msg)?.[1] === word) throw new UsageError(`unknown command "${word}"; the commands are ${names.join(', ')}`);
      }
      throw err && err.name !== 'YError' ? err : yargsUsage(msg ?? err?.message ?? '', args);
    })
    // Everything after `--` is an operand, as for any Unix tool (`vit classify -- -x.png`, `xargs -0 vit classify --`).
    .parserConfiguration({ 'populate--': true })
    .middleware((argv) => operandsAfterDashes(argv), true)
    .middleware((argv) => refuseNonNumbers(args, argv));
  for (const c of COMMANDS) cli.command(lazyCommand(c, ctx));

  try {
    await cli.parseAsync();
    if (stdoutError !== null) {
      stderr.write(`vit: ${writeError('stdout', stdoutError).message}\n`);
      return 1;
    }
    return 0;
  } catch (e) {
    if (e instanceof ExitStatus) return e.code;
    if (pipeClosed || isBrokenPipe(e)) return 0;
    // yargs rejects some errors of a command's own parse past .fail (an option's missing value).
    if (e instanceof Error && e.name === 'YError') e = yargsUsage(e.message, args);
    if (e instanceof VitError) {
      // One line each: the message, then its details (a newline quoted from a file shows as \n).
      stderr.write(`vit: ${[e.headline, ...e.details].map((l) => escapeControls(l)).join('\n  ')}\n`);
      if (e instanceof UsageError) stderr.write('Run `vit --help` (or `vit <command> --help`) for usage.\n');
      return e.exitCode;
    }
    stderr.write(`vit: ${flags.verbose ? escapeControls(String((e as Error).stack), true) : escapeControls((e as Error).message)}\n`);
    return 1;
  } finally {
    await closeLiveResources();
  }
}
