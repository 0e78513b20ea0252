/**
 * repair packs: reads every pack (or the given ones) and rebuilds each damaged, truncated or
 * extended one from its parity file (see docs/design.md, "Parity").
 *
 * A pack is damaged when SHA-256(file) differs from its name. Its blocks are checked against
 * the hashes in its parity file; the bad ones are rebuilt stripe by stripe, and the rebuilt
 * pack replaces the damaged file only when it hashes to the pack's name. This is the one place
 * that overwrites a file (Backend.replace). In a repository with parity, an intact pack whose
 * parity file is missing or damaged gets its parity file written again (encoding is
 * deterministic, so the new file is exactly the one that was lost).
 *
 * Packs that cannot be rebuilt are reported, never changed. Nothing else is touched.
 */
import { NotFoundError, UsageError } from '../errors/index.ts';
import type { EventSink } from '../events/index.ts';
import { nullSink } from '../events/index.ts';
import { getIfExists, parityFileState, rebuildFromParity, replaceVerified } from '../content/parity.ts';
import { sha256hex } from '../content/pack.ts';
import { schemeString } from '../parity/index.ts';
import type { Repository } from '../repository/index.ts';
import { parallel } from '../util/parallel.ts';

/** What repair packs uses of a repository: the pack and parity files (backend), the parity scheme (config), the index. */
export type RepairPacksRepo = Pick<Repository, 'backend' | 'config' | 'store'>;

export interface RepairPacksOptions {
  /** pack names or unique prefixes; all packs (indexed or in storage) when empty */
  packs?: string[];
  /** find and rebuild, but write nothing */
  dryRun?: boolean;
  events?: EventSink;
}

export interface PackRepair {
  pack: string;
  /** what storage held: a damaged (or extended) file, a truncated one, or none */
  problem: 'damaged' | 'truncated' | 'missing';
  /** 'repairable' is a dry run's 'repaired' */
  status: 'repaired' | 'repairable' | 'unrepairable';
  /** why it cannot be rebuilt (unrepairable only) */
  reason?: string;
  /** data blocks of the pack found bad, of dataBlocks */
  badDataBlocks: number;
  dataBlocks: number;
  /** parity blocks found bad */
  badParityBlocks: number;
}

export interface RepairPacksResult {
  /** true when no pack is left damaged (for a dry run: when every damaged pack is repairable) */
  ok: boolean;
  dryRun: boolean;
  /** the repository's scheme, e.g. "16+2", or null when it was created without parity */
  parity: string | null;
  packsChecked: number;
  bytesRead: number;
  intact: number;
  damaged: PackRepair[];
  /** intact packs whose parity file was missing or damaged and was written again (dry run: would be) */
  parityRewritten: { pack: string; was: 'missing' | 'damaged' }[];
  /** parity files whose pack is neither in storage nor in the index (harmless) */
  orphanParity: string[];
}

export async function repairPacks(repo: RepairPacksRepo, opts: RepairPacksOptions = {}): Promise<RepairPacksResult> {
  const emit = opts.events ?? nullSink;
  const dryRun = opts.dryRun === true;
  const scheme = repo.config.parity;
  const index = repo.store.index;
  const stored = new Map<string, number>();
  for await (const f of repo.backend.list('pack')) stored.set(f.name, f.size);
  const known = new Set<string>([...stored.keys(), ...index.packs]);
  const expectedSize = new Map<string, number>(index.packs.map((name, pn) => [name, index.packSizes[pn]!]));

  let names: string[];
  if (opts.packs !== undefined && opts.packs.length > 0) {
    const chosen = new Set<string>();
    for (const ref of opts.packs) {
      if (!/^[0-9a-f]{1,64}$/.test(ref)) throw new UsageError(`${JSON.stringify(ref)} is not a pack name: give a pack name (or unique prefix) as 'meshback check' prints it`);
      const m = [...known].filter((n) => n.startsWith(ref));
      if (m.length === 0) throw new NotFoundError(`no pack ${ref} in the index or in storage: give a pack name (or unique prefix) as 'meshback check' prints it`, { pack: ref });
      if (m.length > 1) throw new UsageError(`pack prefix ${ref} is ambiguous (${m.length} packs): give more digits`);
      chosen.add(m[0]!);
    }
    names = [...chosen];
  } else {
    names = [...known];
  }
  names.sort();

  const res: RepairPacksResult = { ok: true, dryRun, parity: scheme !== undefined ? schemeString(scheme) : null, packsChecked: 0, bytesRead: 0, intact: 0, damaged: [], parityRewritten: [], orphanParity: [] };
  if (opts.packs === undefined || opts.packs.length === 0) {
    for await (const f of repo.backend.list('parity')) if (!known.has(f.name)) res.orphanParity.push(f.name);
  }

  await parallel(names, 2, async (name) => {
    const pack = stored.has(name) ? await getIfExists(repo.backend, { type: 'pack', name }) : undefined;
    res.packsChecked++;
    res.bytesRead += pack?.length ?? 0;
    if (pack !== undefined && sha256hex(pack) === name) {
      res.intact++;
      if (scheme !== undefined) {
        const { state, expected } = await parityFileState(repo.backend, name, pack, scheme);
        if (state !== 'ok') {
          if (!dryRun) await replaceVerified(repo.backend, { type: 'parity', name }, expected);
          res.parityRewritten.push({ pack: name, was: state });
        }
      }
    } else {
      const size = expectedSize.get(name);
      const problem: PackRepair['problem'] = pack === undefined ? 'missing' : size !== undefined && pack.length < size ? 'truncated' : 'damaged';
      const r = await rebuildFromParity(repo.backend, name, pack);
      const entry: PackRepair = { pack: name, problem, status: 'unrepairable', badDataBlocks: r.badDataBlocks, dataBlocks: r.dataBlocks, badParityBlocks: r.badParityBlocks };
      if (r.status === 'repaired' && r.data !== undefined) {
        if (!dryRun) {
          await replaceVerified(repo.backend, { type: 'pack', name }, r.data);
          if (scheme !== undefined) {
            const { state, expected } = await parityFileState(repo.backend, name, r.data, scheme);
            if (state !== 'ok') {
              await replaceVerified(repo.backend, { type: 'parity', name }, expected);
              res.parityRewritten.push({ pack: name, was: state });
            }
          }
        }
        entry.status = dryRun ? 'repairable' : 'repaired';
      } else {
        entry.reason =
          pack === undefined
            ? `the pack file is missing${r.reason === 'it has no parity file' ? ' and it has no parity file' : `; parity rebuilds damaged regions of a pack (up to about ${scheme !== undefined ? `${scheme.m}/${scheme.k}` : 'm/k'} of it), not a whole pack`}`
            : r.reason === 'it has no parity file' && scheme === undefined
              ? 'it has no parity file (the repository was created without --parity)'
              : (r.reason ?? 'unknown');
      }
      res.damaged.push(entry);
    }
    emit({ type: 'progress', op: 'repair', files: res.packsChecked, bytes: res.bytesRead, totalFiles: names.length });
  });

  res.damaged.sort((a, b) => (a.pack < b.pack ? -1 : 1));
  res.parityRewritten.sort((a, b) => (a.pack < b.pack ? -1 : 1));
  res.orphanParity.sort();
  res.ok = res.damaged.every((d) => d.status !== 'unrepairable');
  return res;
}
