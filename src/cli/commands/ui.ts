/**
 * ui: the web dashboard of `meshback server` for one repository, without policies
 * (`meshback ui --repo LOCATION`): its snapshots (grouped by host, paths and tags in the page),
 * diffs, repository health, the reports of --reports and verified restores into empty
 * directories. No scheduler and no triggers: the API of src/server with policies() empty.
 * Runs until SIGINT/SIGTERM. Listens on 127.0.0.1:8440 by default; elsewhere only with
 * --token-file and TLS (the rules of `meshback server`).
 */
import { UsageError } from '../../errors/index.ts';
import { openRepository } from '../../repository/open.ts';
import { RunRegistry, createApi, isLoopback, listen } from '../../server/index.ts';
import type { SnapshotRow } from '../../server/index.ts';
import type { Command } from '../command.ts';
import { str } from '../command.ts';
import { backendFor, getPassword, repoLocation } from '../context.ts';
import { EXIT } from '../exit.ts';
import { setInterruptHandler } from '../signals.ts';
import { VERSION } from '../version.ts';
import { apiSettings, dashboard, serverCommand } from './server.ts';

export const UI_LISTEN = '127.0.0.1:8440';

export const uiCommand: Command = {
  name: 'ui',
  summary: 'serve the web dashboard of one repository (snapshots, diffs, health, verified restores) until stopped',
  usage: `meshback ui --repo LOCATION [--listen HOST:PORT] [--password-file FILE] [--token-file FILE] [--tls-cert FILE --tls-key FILE] [--reports DIR]`,
  options: {
    listen: { ...serverCommand.options['listen']!, description: `where the dashboard listens (default ${UI_LISTEN}; port 0: any free port); an address that is not loopback needs --token-file and --tls-cert/--tls-key` },
    'token-file': serverCommand.options['token-file']!,
    'tls-cert': serverCommand.options['tls-cert']!,
    'tls-key': serverCommand.options['tls-key']!,
    reports: serverCommand.options['reports']!,
  },
  async run(ctx, v) {
    const api = apiSettings(v, (m) => ctx.out.warn(m), UI_LISTEN);
    const location = repoLocation(ctx.g);
    let password: string | undefined;
    const open = (lock: 'none' | 'shared', command: string) => openRepository(backendFor(location, ctx.out.sink, ctx.g.cache), async () => (password ??= await getPassword(ctx.g)), { lock, command, loadIndex: true, retryLockMs: ctx.g.retryLockMs ?? 0, events: ctx.out.sink });
    // the password is asked (and the repository found) before the page is served
    await (await open('none', 'ui')).close();
    const list = async (): Promise<SnapshotRow[]> => {
      const { repo, close } = await open('none', 'ui');
      try {
        const rows = (await repo.listSnapshots()).map((s): SnapshotRow => ({ id: s.id, repository: location, policy: s.snapshot.tags.find((t) => t.startsWith('policy='))?.slice('policy='.length) ?? '', snapshot: s.snapshot }));
        return rows.sort((a, b) => (a.snapshot.time < b.snapshot.time ? 1 : a.snapshot.time > b.snapshot.time ? -1 : 0));
      } finally {
        await close();
      }
    };
    const apiServer = createApi({
      registry: new RunRegistry({}),
      version: VERSION,
      loopback: api.addr !== undefined && isLoopback(api.addr.host),
      ...(api.token !== undefined ? { token: api.token } : {}),
      policies: () => [],
      trigger: () => ({ ok: false, status: 404, code: 'NOT_FOUND', message: 'meshback ui serves one repository without policies: trigger runs on a meshback server' }),
      running: () => [],
      snapshots: () => list(),
      ui: dashboard('repo', () => [{ location, open }], list, str(v['reports'])),
    });
    if (api.addr === undefined) throw new UsageError('meshback ui needs an address to serve the dashboard on: --listen HOST:PORT');
    const listening = await listen(apiServer.app.fetch, api.addr, api.tls);
    ctx.out.result(`ui: the dashboard of ${location} on ${listening.url}/ (${api.token !== undefined ? 'token required' : 'no token: loopback only'}); stop with Ctrl-C`);
    ctx.out.jsonOut({ message_type: 'ui', event: 'start', repository: location, api: listening.url, token: api.token !== undefined });
    const sig = await new Promise<string>((res) => setInterruptHandler((s) => res(s)));
    setInterruptHandler(undefined);
    ctx.out.result(`ui: ${sig} received, stopped`);
    apiServer.closeStreams();
    await listening.close();
    return EXIT.OK;
  },
};
