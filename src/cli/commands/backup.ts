import { backup } from '../../archiver/index.ts';
import { promises as fsp } from 'node:fs';
import { Excluder, parseExcludeFile } from '../../archiver/glob.ts';
import { NotFoundError, UsageError, errMessage, isErrno } from '../../errors/index.ts';
import type { Command } from '../command.ts';
import { str, strs } from '../command.ts';
import { openRepo } from '../context.ts';
import { EXIT } from '../exit.ts';
import { fmtBytes } from '../../util/units.ts';
import { resourceUsage } from '../resources.ts';
import { reportRenewed } from './lock.ts';

export const backupCommand: Command = {
  name: 'backup',
  summary: 'back up files and directories into a new snapshot',
  usage: 'meshback backup PATH... [--tag KEY=VALUE]... [--host NAME] [--exclude PATTERN]... [--exclude-file FILE]... [--parent ID] [--json]',
  options: {
    tag: { type: 'string', multiple: true, argument: 'KEY=VALUE', description: 'add a tag to the snapshot (repeatable)' },
    host: { type: 'string', argument: 'NAME', description: 'host name recorded in the snapshot (default: this host)' },
    exclude: { type: 'string', multiple: true, argument: 'PATTERN', description: "leave out matching entries (repeatable, gitignore-style): without '/' a name at any depth ('*.log', 'cache/'), with '/' a path below PATH or an absolute path; '!PATTERN' re-includes; the last match wins" },
    'exclude-file': { type: 'string', multiple: true, argument: 'FILE', description: "read exclude patterns from FILE, one per line ('#' comments); they come before the --exclude patterns" },
    parent: { type: 'string', argument: 'ID', description: 'snapshot to compare with to skip unchanged files (default: latest of same host and paths)' },
  },
  async run(ctx, v, positionals) {
    if (positionals.length === 0) throw new UsageError('backup needs at least one PATH: meshback backup PATH...');
    const tags = strs(v['tag']);
    for (const t of tags) if (!/^[^=\s]+=.*$/.test(t)) throw new UsageError(`--tag ${JSON.stringify(t)} is not KEY=VALUE`);
    const excludes = [...(await readExcludeFiles(strs(v['exclude-file']))), ...strs(v['exclude'])];
    new Excluder(excludes); // a bad pattern is refused before the repository is opened
    const repo = await openRepo(ctx, { lock: 'shared', command: 'backup' });
    const host = str(v['host']);
    const parent = str(v['parent']);
    const r = await backup(repo, {
      paths: positionals,
      tags,
      ...(host !== undefined ? { host } : {}),
      excludes,
      ...(parent !== undefined ? { parent } : {}),
      events: ctx.out.sink,
      scan: process.stderr.isTTY === true && !ctx.g.json,
    });
    const s = r.snapshot.summary;
    ctx.out.done();
    reportRenewed(ctx, r.objectLock);
    ctx.out.result(`snapshot ${r.id.slice(0, 8)} saved${r.snapshot.parent !== undefined ? ` (parent ${r.snapshot.parent.slice(0, 8)})` : ''}`);
    ctx.out.info(`files: ${s.files} (${s.filesRead} read, ${s.filesUnchanged} unchanged), dirs: ${s.dirs}, symlinks: ${s.symlinks}`);
    ctx.out.info(`data: ${fmtBytes(s.totalBytes)} in snapshot, ${fmtBytes(s.bytesRead)} read, ${fmtBytes(s.bytesAdded)} new (${s.blobsAdded} chunks), ${fmtBytes(s.bytesStored)} stored`);
    ctx.out.info(`took ${s.duration.toFixed(2)} s`);
    if (r.changedDuringRead.length > 0) ctx.out.warn(`${r.changedDuringRead.length} file(s) changed while they were read (marked in the snapshot): ${r.changedDuringRead.slice(0, 5).join(', ')}${r.changedDuringRead.length > 5 ? ', ...' : ''}`);
    if (r.errors.length > 0) ctx.out.result(`snapshot ${r.id.slice(0, 8)} is INCOMPLETE: ${r.errors.length} item(s) could not be read (listed above); fix their permissions and back up again`);
    ctx.out.jsonOut({ message_type: 'summary', snapshot_id: r.id, ...r.snapshot, errors: r.errors, changed_during_read: r.changedDuringRead, resources: resourceUsage() });
    return r.errors.length > 0 ? EXIT.INCOMPLETE : EXIT.OK;
  },
};

/** The patterns of every --exclude-file, in order. */
async function readExcludeFiles(files: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const f of files) {
    let text: string;
    try {
      text = await fsp.readFile(f, 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT')) throw new NotFoundError(`--exclude-file ${f} does not exist: give an existing file of patterns`, { path: f });
      throw new UsageError(`--exclude-file ${f} cannot be read (${errMessage(err)}): check its permissions`);
    }
    out.push(...parseExcludeFile(text));
  }
  return out;
}
