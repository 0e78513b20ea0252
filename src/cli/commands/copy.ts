/**
 * copy: copies snapshots of another repository (--from-repo) into this one (--repo), re-encrypted
 * for it, sending only the chunks it lacks; each copied snapshot is verified against its source
 * before it is written. The operation is src/copier/; this file opens both repositories (a shared
 * lock on each, as backup takes), names which one an error comes from, and prints the result.
 */
import * as path from 'node:path';
import { MeshbackError, UsageError } from '../../errors/index.ts';
import type { EventSink, MeshEvent } from '../../events/index.ts';
import { checkCopyOptions, copy } from '../../copier/index.ts';
import type { CopiedSnapshot, CopyOptions } from '../../copier/index.ts';
import type { Repository } from '../../repository/index.ts';
import { openRepository } from '../../repository/open.ts';
import { fmtBytes, parseDuration } from '../../util/units.ts';
import type { Command } from '../command.ts';
import { bool, str, strs } from '../command.ts';
import { backendFor, getFromPassword, openRepo } from '../context.ts';
import { EXIT } from '../exit.ts';
import { resourceUsage } from '../resources.ts';

/** An error of one side, named: its code (so its exit code) unchanged, the hints spelled with that side's flags. */
function named(err: unknown, side: 'source' | 'destination'): unknown {
  if (!(err instanceof MeshbackError) || /^(source|destination) repository/.test(err.message)) return err;
  let msg = err.message;
  if (side === 'source') {
    msg = msg
      .replace('check --repo / MESHBACK_REPO', 'check --from-repo / MESHBACK_FROM_REPO')
      .replace('check MESHBACK_PASSWORD / --password-file', 'check MESHBACK_FROM_PASSWORD / --from-password-file')
      .replace(/ in --repo /g, ' in --from-repo ');
  }
  return new MeshbackError(err.code, `${side} repository: ${msg}`, { cause: err, data: { ...err.data, repository: side } });
}

/** The line of one snapshot, from its 'snapshot-copied' event (the figures of CopiedSnapshot). */
function line(e: Extract<MeshEvent, { type: 'snapshot-copied' }>): string {
  if (!e.copied) return `snapshot ${e.source.slice(0, 8)}: already copied, as ${e.id.slice(0, 8)}`;
  const n = (k: keyof CopiedSnapshot): number => e.stats[k] ?? 0;
  const skipped = n('chunksSkipped') > 0 ? `, ${n('chunksSkipped')} already there` : '';
  const reused = n('treesReused') > 0 ? `, ${n('treesReused')} unchanged subtree(s) not read again` : '';
  return (
    `snapshot ${e.source.slice(0, 8)} -> ${e.id.slice(0, 8)}: ${n('files')} files, ${fmtBytes(n('bytes'))}; ` +
    `read ${n('chunksRead')} chunks (${fmtBytes(n('bytesRead'))}), sent ${n('chunksSent')} (${fmtBytes(n('bytesSent'))}, ${fmtBytes(n('bytesStored'))} stored)${skipped}${reused}; ` +
    `verified ${n('nodesVerified')} nodes${n('chunksVerified') > 0 ? `, ${n('chunksVerified')} chunks read back` : ''} in ${n('duration').toFixed(2)} s`
  );
}

export const copyCommand: Command = {
  name: 'copy',
  summary: 'copy snapshots from another repository (--from-repo) into this one, verified',
  usage: 'meshback copy [SNAPSHOT...] --from-repo LOCATION [--from-password-file FILE] [--host NAME]... [--tag KEY=VALUE]... [--path PATH]... [--read-data] [--json]',
  options: {
    'from-repo': { type: 'string', argument: 'LOCATION', description: 'the repository to copy from (or MESHBACK_FROM_REPO); --repo is the one copied into' },
    'from-password-file': { type: 'string', argument: 'FILE', description: "read the source's password from FILE (or MESHBACK_FROM_PASSWORD, MESHBACK_FROM_PASSWORD_FILE, else a prompt on a terminal)" },
    host: { type: 'string', multiple: true, argument: 'NAME', description: 'only snapshots of this host (repeatable: any of them)' },
    tag: { type: 'string', multiple: true, argument: 'KEY=VALUE', description: 'only snapshots with this tag (repeatable: all of them)' },
    path: { type: 'string', multiple: true, argument: 'PATH', description: 'only snapshots that include this path (repeatable: all of them)' },
    'read-data': { type: 'boolean', description: 'also read back every chunk of each copied snapshot from the destination and re-hash it' },
  },
  async run(ctx, v, positionals) {
    const from = str(v['from-repo']) ?? process.env['MESHBACK_FROM_REPO'];
    if (from === undefined || from === '') throw new UsageError('copy needs the repository to copy from: pass --from-repo LOCATION (or set MESHBACK_FROM_REPO)');
    const tags = strs(v['tag']);
    for (const t of tags) if (!/^[^=\s]+=.*$/.test(t)) throw new UsageError(`--tag ${JSON.stringify(t)} is not KEY=VALUE`);
    const interval = process.env['MESHBACK_CHECKPOINT_INTERVAL'];
    const opts: CopyOptions = {
      snapshots: positionals,
      hosts: strs(v['host']),
      paths: strs(v['path']).map((p) => path.resolve(p)),
      tags,
      readData: bool(v['read-data']),
      // the copy map lives beside the metadata cache (--cache-dir); --no-cache: for this run only
      ...(ctx.g.cache !== undefined && ctx.g.cache !== false ? { cacheDir: ctx.g.cache.dir } : {}),
      ...(interval !== undefined && interval !== '' ? { checkpointMs: parseDuration(interval, 'MESHBACK_CHECKPOINT_INTERVAL', { zero: true }) } : {}),
    };
    checkCopyOptions(opts); // before a repository is opened

    const fromFile = str(v['from-password-file']);
    let src: Repository;
    try {
      ({ repo: src } = await openRepository(backendFor(from, ctx.out.sink, ctx.g.cache), () => getFromPassword(fromFile), { lock: 'shared', command: 'copy', retryLockMs: ctx.g.retryLockMs ?? 0, events: ctx.out.sink }));
    } catch (err) {
      throw named(err, 'source');
    }
    let dst: Repository;
    try {
      dst = await openRepo(ctx, { lock: 'shared', command: 'copy', prompt: 'destination repository password: ' });
    } catch (err) {
      throw named(err, 'destination');
    }

    const events: EventSink = (e) => {
      if (e.type === 'snapshot-copied') ctx.out.result(line(e));
      ctx.out.sink(e);
    };
    const r = await copy(src, dst, { ...opts, events });
    ctx.out.done();
    if (r.snapshots.length === 0) ctx.out.result('no snapshot of the source matches: nothing to copy');
    else {
      ctx.out.result(
        `copied ${r.copied} snapshot(s)${r.alreadyCopied > 0 ? `, ${r.alreadyCopied} already there` : ''}: ${r.chunksSent} chunks sent (${fmtBytes(r.bytesSent)}, ${fmtBytes(r.bytesStored)} stored), ${fmtBytes(r.bytesRead)} read from the source in ${r.duration.toFixed(2)} s`,
      );
    }
    ctx.out.jsonOut({ message_type: 'summary', ...r, resources: resourceUsage() });
    return EXIT.OK;
  },
};
