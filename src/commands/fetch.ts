import type CliProgress from 'cli-progress';
import type { DownloadProgress, FetchOptions } from '../io/hub.js';
import { registerModelResolver } from '../io/model-resolvers.js';
import { progressEnabled } from '../io/progress.js';
import { writeAll } from '../io/streams.js';
import type { Context } from '../pipeline/context.js';
import type { CommandBody } from './options.js';

const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

type Hub = typeof import('../io/hub.js');

/** The hub client, loaded only when a hub model is asked for: every run registers the resolver. */
function loadHub(): Promise<Hub> {
  return import('../io/hub.js');
}

/**
 * A byte bar per large file, shown under the same conditions as the run's bar (a TTY stderr, not CI, not
 * --quiet); createProgress counts images, this one counts MiB.
 */
async function downloadBar(hub: Hub, stderr: NodeJS.WritableStream, quiet: boolean): Promise<DownloadProgress | undefined> {
  if (!progressEnabled({ stderr, quiet })) return undefined;
  const { default: cliProgress } = await import('cli-progress');
  let bar: CliProgress.SingleBar | null = null;
  let total = 0;
  return {
    start(file, totalBytes, doneBytes) {
      if (totalBytes !== null && totalBytes < hub.LARGE_FILE) return;
      total = totalBytes ?? 0;
      bar = new cliProgress.SingleBar({
        stream: stderr as NodeJS.WriteStream,
        format: `${file} [{bar}] {percentage}% {done} / {size}`,
        hideCursor: true,
        clearOnComplete: true,
      }, cliProgress.Presets.shades_classic);
      bar.start(total, doneBytes, { done: mib(doneBytes), size: totalBytes === null ? '?' : mib(total) });
    },
    update(doneBytes) {
      bar?.update(doneBytes, { done: mib(doneBytes) });
    },
    stop() {
      bar?.stop();
      bar = null;
    },
  };
}

async function hubOptions(hub: Hub, ctx: Context, quiet: boolean): Promise<FetchOptions> {
  return { progress: await downloadBar(hub, ctx.stderr, quiet), note: ctx.note };
}

let hubContext: { ctx: Context; quiet: boolean } | null = null;

/**
 * Lets `--model ORG/NAME[@REV]` name a hub model on every command: served from the cache when it holds the
 * model, fetched otherwise (unless offline). Called by the CLI for each run, so notes go to that run's stderr.
 */
export function enableHubModels(ctx: Context, quiet: boolean): void {
  if (!hubContext) {
    registerModelResolver(async (name) => {
      const hub = await loadHub();
      return hub.resolveHubModel(name, await hubOptions(hub, hubContext!.ctx, hubContext!.quiet));
    });
  }
  hubContext = { ctx, quiet };
}

export function fetchCommand(ctx: Context): CommandBody {
  return {
    builder: (y) => y
      .positional('model', { type: 'string', describe: 'hub model id ORG/NAME (optionally ORG/NAME@REVISION)' })
      .option('revision', { type: 'string', describe: 'branch, tag or commit hash (default: main)' })
      .example('$0 fetch google/vit-base-patch16-224', 'download config and weights; prints the snapshot directory')
      .example('$0 classify photos/ --model "$(vit fetch google/vit-base-patch16-224)"', 'fetch once, then run from the cache')
      .example('HF_HUB_OFFLINE=1 $0 fetch google/vit-base-patch16-224', 'only look in the cache')
      .epilog('Environment: HF_HUB_CACHE or HF_HOME (cache location), HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE=1.'),
    handler: async (argv) => {
      const a = argv as Record<string, unknown>;
      const hub = await loadHub();
      const r = await hub.fetchModel(a.model as string, { ...await hubOptions(hub, ctx, a.quiet as boolean), revision: a.revision as string | undefined });
      ctx.note(
        `${r.repo}@${r.revision} is commit ${r.commit}: ` +
        (r.downloaded.length > 0 ? `downloaded ${r.downloaded.join(', ')}` : 'everything was in the cache'),
      );
      await writeAll(ctx.stdout, `${r.dir}\n`);
    },
  };
}
