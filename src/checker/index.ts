/**
 * checker: verifies a repository.
 *
 * Structure: every index file decrypts; every indexed pack exists with the recorded size;
 * every snapshot decrypts; every tree of every snapshot loads (authenticated, re-hashed,
 * valid) and every chunk it references is indexed. With readData, every pack is read whole:
 * its SHA-256 must equal its name, its header must decrypt and agree with the index, and
 * every blob must decrypt, decompress and re-hash to its id.
 *
 * Findings are collected, never thrown per item. Damage is mapped back to the snapshots
 * and files it affects. A read that fails for a passing reason after the storage stack's retries
 * (isRetryable: the store unreachable) is no finding: the check stops with that error (exit 7),
 * rather than call intact data damaged (exit 4) and send the user to repair it.
 *
 * Parity: a damaged pack is tried against its parity file (nothing is written) and reported
 * as repairable or not. In a repository with parity, packs without a parity file, and with
 * readData packs whose parity file differs from the one their bytes give, are listed apart:
 * they are intact but unprotected, which is not an error.
 */
import { MeshbackError, errMessage, isRetryable } from '../errors/index.ts';
import type { EventSink } from '../events/index.ts';
import { nullSink, reportOp } from '../events/index.ts';
import { decodePackHeader } from '../content/pack.ts';
import type { PackEntry } from '../content/pack.ts';
import { idEquals } from '../crypto/index.ts';
import { availableParallelism } from 'node:os';
import { BlobList, BlobThreads } from '../content/blob-threads.ts';
import { parityFileState, rebuildFromParity } from '../content/parity.ts';
import type { Repository } from '../repository/index.ts';
import { HOLE_PREFIX } from '../snapshot/tree.ts';
import { childPath, displayPath, walkTree } from '../snapshot/walker.ts';
import { parallel } from '../util/parallel.ts';
import { memoryPlan } from '../util/memory.ts';

/** The largest pack read into a shared buffer of the check's own; a larger file (not one meshback wrote) is read into memory of its own. */
const MAX_SLOT = 64 * 1024 * 1024;

/** What a check uses of a repository: it reads every file kind directly (packs, indexes, parity) to judge them, so the backend, config, key and content store, plus snapshots and trees. */
export type CheckRepo = Pick<Repository, 'backend' | 'config' | 'key' | 'store' | 'loadSnapshot' | 'loadTree'>;

export interface CheckOptions {
  readData?: boolean;
  events?: EventSink;
}

export interface Finding {
  kind: 'pack-missing' | 'pack-size' | 'pack-damaged' | 'blob-damaged' | 'blob-missing' | 'tree-damaged' | 'snapshot-damaged' | 'index-damaged';
  message: string;
  pack?: string;
  blob?: string;
  snapshot?: string;
}

export interface Affected {
  snapshot: string;
  time: string;
  files: string[];
}

export interface CheckResult {
  ok: boolean;
  snapshots: number;
  trees: number;
  packs: number;
  packsRead: number;
  bytesRead: number;
  blobsChecked: number;
  findings: Finding[];
  /** packs not referenced by any index (left by an interrupted backup; harmless) */
  unindexedPacks: string[];
  damagedPacks: string[];
  /** damaged packs that their parity files can rebuild ('meshback repair packs') */
  repairablePacks: string[];
  /** packs of a repository with parity whose parity file is missing or (with readData) damaged; not errors: the packs are intact */
  parityProblems: { pack: string; state: 'missing' | 'damaged' }[];
  affected: Affected[];
}

/** check, between its op-start and summary events. */
export function check(repo: CheckRepo, opts: CheckOptions = {}): Promise<CheckResult> {
  return reportOp(opts.events ?? nullSink, 'check', { readData: opts.readData === true }, () => runCheck(repo, opts));
}

async function runCheck(repo: CheckRepo, opts: CheckOptions = {}): Promise<CheckResult> {
  const emit = opts.events ?? nullSink;
  const findings: Finding[] = [];
  const res: CheckResult = { ok: true, snapshots: 0, trees: 0, packs: 0, packsRead: 0, bytesRead: 0, blobsChecked: 0, findings, unindexedPacks: [], damagedPacks: [], repairablePacks: [], parityProblems: [], affected: [] };
  const index = repo.store.index;

  // snapshots and trees
  const snaps: { id: string; tree: string; time: string }[] = [];
  for await (const f of repo.backend.list('snapshot')) {
    try {
      const s = await repo.loadSnapshot(f.name);
      snaps.push({ id: f.name, tree: s.tree, time: s.time });
    } catch (err) {
      if (isRetryable(err)) throw err;
      findings.push({ kind: 'snapshot-damaged', snapshot: f.name, message: `snapshot ${f.name.slice(0, 8)}: ${errMessage(err)}` });
    }
  }
  // a backup running beside this check (both hold shared locks) may have written index files and a
  // snapshot since the index was loaded: load the new index files, then list the packs, so that
  // nothing the listed snapshots use looks missing
  await repo.store.loadIndex();
  for (const d of repo.store.damagedIndexes) {
    findings.push({ kind: 'index-damaged', message: `${d.message}: the packs it lists are unknown until the index is rebuilt` });
  }

  // packs in storage vs in index
  const stored = new Map<string, number>();
  for await (const f of repo.backend.list('pack')) stored.set(f.name, f.size);
  res.packs = index.packs.length;
  const badPacks = new Set<string>();
  const badBlobs = new Set<string>();
  const lostPacks = new Set<string>();
  for (let pn = 0; pn < index.packs.length; pn++) {
    const name = index.packs[pn]!;
    const size = stored.get(name);
    if (size === undefined) {
      findings.push({ kind: 'pack-missing', pack: name, message: `pack ${name} is in the index but missing from storage` });
      badPacks.add(name);
      lostPacks.add(name);
    } else if (size !== index.packSizes[pn]) {
      findings.push({ kind: 'pack-size', pack: name, message: `pack ${name} has ${size} bytes, the index says ${index.packSizes[pn]}: it is truncated or damaged` });
      badPacks.add(name);
    }
  }
  for (const name of stored.keys()) if (!index.hasPack(name)) res.unindexedPacks.push(name);
  const parityProblems = new Map<string, 'missing' | 'damaged'>();
  if (repo.config.parity !== undefined) {
    const parityFiles = new Set<string>();
    for await (const f of repo.backend.list('parity')) parityFiles.add(f.name);
    for (const name of index.packs) if (stored.has(name) && !parityFiles.has(name)) parityProblems.set(name, 'missing');
  }

  res.snapshots = snaps.length;
  const seenTrees = new Set<string>();
  const missingBlobs = new Set<string>();
  for (const s of snaps) {
    const snapshot = s.id;
    await walkTree(
      repo,
      { tree: s.tree },
      (n) => {
        if (n.type !== 'file') return;
        for (const c of n.content ?? []) {
          if (c.startsWith(HOLE_PREFIX) || missingBlobs.has(c)) continue;
          if (!index.hasHex(c)) {
            missingBlobs.add(c);
            badBlobs.add(c);
            findings.push({ kind: 'blob-missing', blob: c, snapshot, message: `chunk ${c.slice(0, 16)} referenced by snapshot ${snapshot.slice(0, 8)} is not in any index` });
          }
        }
      },
      {
        uniqueTrees: seenTrees,
        onTree: () => void res.trees++,
        onTreeError: (err, id) => {
          if (isRetryable(err)) throw err;
          findings.push({ kind: 'tree-damaged', blob: id, snapshot, message: `tree ${id.slice(0, 16)} (snapshot ${snapshot.slice(0, 8)}): ${errMessage(err)}` });
          if (err instanceof MeshbackError && typeof err.data['pack'] === 'string') badPacks.add(err.data['pack']);
          badBlobs.add(id);
        },
      },
    );
  }

  // read all data
  if (opts.readData === true) {
    const packsByNo = index.packs.map((name, pn) => ({ name, pn })).filter((p) => stored.has(p.name));
    // the index's entries of each pack, as entry numbers (see entriesByPack); their ids in hex are
    // made only for a finding (a million blobs would otherwise each leave strings to collect)
    const { start, order } = index.entriesByPack();
    const hexOf = (e: number): string => Buffer.from(index.idOf(e)).toString('hex');
    const totalPacks = packsByNo.length;
    // each pack is read into a buffer shared with the blob threads (one per pack in flight, at most
    // one per core), which hash it and prove its blobs while the next ones are read
    const lanes = memoryPlan().packsAtOnce;
    let slotSize = 1;
    for (const p of packsByNo) slotSize = Math.max(slotSize, Math.min(stored.get(p.name)!, MAX_SLOT));
    const spare: SharedArrayBuffer[] = [];
    const threads = new BlobThreads(repo.key.encKey, repo.key.idKey, Math.min(availableParallelism(), lanes, totalPacks));
    try {
      await parallel(packsByNo, lanes, async ({ name, pn }) => {
        const slot = spare.pop() ?? new SharedArrayBuffer(slotSize);
        try {
          await checkPack(name, pn, slot);
        } finally {
          spare.push(slot);
        }
      });
    } finally {
      await threads.close();
    }

    async function checkPack(name: string, pn: number, slot: SharedArrayBuffer): Promise<void> {
      let data: Buffer;
      let shared = slot;
      try {
        data = await repo.backend.get({ type: 'pack', name }, undefined, Buffer.from(slot));
      } catch (err) {
        if (isRetryable(err)) throw err;
        findings.push({ kind: 'pack-damaged', pack: name, message: `pack ${name} cannot be read: ${errMessage(err)}` });
        badPacks.add(name);
        lostPacks.add(name);
        return;
      }
      if (data.buffer !== slot) {
        // the backend read into memory of its own (a pack larger than the slot, or a backend that does not read into buffers)
        if (data.length > slot.byteLength) shared = new SharedArrayBuffer(data.length);
        const view = Buffer.from(shared, 0, data.length);
        view.set(data);
        data = view;
      }
      res.packsRead++;
      res.bytesRead += data.length;
      const first = start[pn]!;
      const n = start[pn + 1]! - first;
      const blobs = new BlobList(n);
      for (let k = 0; k < n; k++) {
        const e = order[first + k]!;
        blobs.set(k, index.offsetOf(e), index.lengthOf(e), index.rawLengthOf(e), index.idOf(e));
      }
      const proof = await threads.verifyPack(name, shared, data.length, blobs);
      if (proof.sha !== name) {
        const r = await rebuildFromParity(repo.backend, name, data);
        const note = r.status === 'repaired' ? `; repairable from parity: run 'meshback repair packs'` : repo.config.parity !== undefined ? `; not repairable from parity: ${r.reason}` : '';
        if (r.status === 'repaired') res.repairablePacks.push(name);
        findings.push({ kind: 'pack-damaged', pack: name, message: `pack ${name} is damaged: its content does not match its name (SHA-256)${note}` });
        badPacks.add(name);
      } else if (repo.config.parity !== undefined) {
        const { state } = await parityFileState(repo.backend, name, data, repo.config.parity);
        if (state !== 'ok') parityProblems.set(name, state);
        else parityProblems.delete(name);
      }
      try {
        // the header lists blobs in pack order: each of the index's entries must be there, at its offset
        const hdr = decodePackHeader(repo.key.encKey, data, name);
        for (let k = first; k < first + n; k++) {
          const e = order[k]!;
          const at = atOffset(hdr, index.offsetOf(e));
          if (at === undefined || !idEquals(at.id, index.idOf(e))) {
            const hex = hexOf(e);
            findings.push({ kind: 'pack-damaged', pack: name, blob: hex, message: `pack ${name}: its header does not list blob ${hex.slice(0, 16)} that the index places in it` });
            badPacks.add(name);
          }
        }
      } catch (err) {
        findings.push({ kind: 'pack-damaged', pack: name, message: errMessage(err) });
        badPacks.add(name);
      }
      res.blobsChecked += n;
      for (const { k, message } of proof.bad) {
        const hex = hexOf(order[first + k]!);
        findings.push({ kind: 'blob-damaged', pack: name, blob: hex, message: message ?? `blob ${hex.slice(0, 16)} lies past the end of pack ${name}` });
        badBlobs.add(hex);
        badPacks.add(name);
      }
      emit({ type: 'progress', op: 'check', files: res.packsRead, bytes: res.bytesRead, totalFiles: totalPacks });
    }
  }

  // map damage to snapshots and files
  if (badPacks.size > 0 || badBlobs.size > 0) {
    const packOfBlob = (hex: string): string | undefined => {
      const e = index.lookup(Buffer.from(hex, 'hex'));
      return e?.pack;
    };
    // without readData, a missing or mis-sized pack condemns all its blobs; with it, the
    // blobs were checked one by one and only a pack that could not be read is lost whole
    const isBad = (hex: string): boolean => {
      if (badBlobs.has(hex)) return true;
      const p = packOfBlob(hex);
      if (p === undefined) return false;
      return lostPacks.has(p) || (opts.readData !== true && badPacks.has(p));
    };
    for (const s of snaps) {
      const files: string[] = [];
      const unreadable = (dir: Buffer): void => void files.push(`${displayPath(dir)} (directory listing unreadable)`);
      await walkTree(
        repo,
        { tree: s.tree },
        (n, dir) => {
          if (n.type === 'file' && (n.content ?? []).some((c) => !c.startsWith(HOLE_PREFIX) && isBad(c))) files.push(displayPath(childPath(dir, n)));
        },
        {
          shouldLoad: (id, dir) => {
            if (!isBad(id)) return true;
            unreadable(dir);
            return false;
          },
          onTreeError: (err, _id, dir) => {
            if (isRetryable(err)) throw err;
            unreadable(dir);
          },
        },
      );
      if (files.length > 0) res.affected.push({ snapshot: s.id, time: s.time, files });
    }
  }
  res.damagedPacks = [...badPacks].sort();
  res.repairablePacks.sort();
  res.parityProblems = [...parityProblems].map(([pack, state]) => ({ pack, state })).sort((a, b) => (a.pack < b.pack ? -1 : 1));
  res.ok = findings.length === 0;
  return res;
}

/** The entry of a pack header (sorted by offset, as packs are written) at `offset`, or undefined. */
function atOffset(hdr: readonly PackEntry[], offset: number): PackEntry | undefined {
  let lo = 0;
  let hi = hdr.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const o = hdr[mid]!.offset;
    if (o === offset) return hdr[mid];
    if (o < offset) lo = mid + 1;
    else hi = mid - 1;
  }
  return undefined;
}
