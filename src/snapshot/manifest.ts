/**
 * Snapshot manifests: what was backed up, when, from where, and the root tree. The schema is the
 * format's definition (docs/schemas/snapshot.json); the types are inferred from it.
 */
import { about, hexId, int, isoDate, v } from '../util/schema.ts';

const count = () => int(0);

export const SnapshotSummarySchema = v.object({
  files: count(),
  dirs: count(),
  symlinks: count(),
  others: count(),
  totalBytes: about(count(), 'bytes of all files in the snapshot'),
  bytesRead: about(count(), 'bytes actually read from the source during this backup'),
  filesRead: count(),
  filesUnchanged: count(),
  filesChangedDuringRead: count(),
  errors: count(),
  blobsAdded: count(),
  bytesAdded: about(count(), 'raw (uncompressed) bytes of new blobs'),
  bytesStored: about(count(), 'bytes of new files written to the repository'),
  duration: v.pipe(v.number(), v.minValue(0), v.description('seconds')),
});
export type SnapshotSummary = v.InferOutput<typeof SnapshotSummarySchema>;

/**
 * Set by 'repair snapshots' on the snapshot it writes in place of a damaged one (which it then
 * deletes); the snapshot also gets the tag 'repaired'. `summary` still describes the original
 * backup run.
 */
export const SnapshotRepairSchema = v.object({
  original: about(hexId(), 'id of the snapshot this one replaces'),
  time: about(isoDate(), 'when the repair ran'),
  droppedFiles: about(v.array(v.string()), 'files left out because some of their data is missing or damaged (paths from the root tree)'),
  droppedDirs: about(v.array(v.string()), 'directories left out because their listing (tree) is missing or damaged'),
});
export type SnapshotRepair = v.InferOutput<typeof SnapshotRepairSchema>;

/**
 * Set by 'copy' on the snapshot it writes into the destination repository: which snapshot of which
 * repository it is a copy of. A rerun of copy finds it here and does not copy that snapshot again.
 * `summary` still describes the original backup run.
 */
export const SnapshotCopySchema = v.object({
  original: about(hexId(), 'id of the snapshot in the source repository'),
  repository: about(v.pipe(v.string(), v.regex(/^[0-9a-f]{32}$/, 'must be 32 hex digits')), "id of the source repository (its config's id)"),
  time: about(isoDate(), 'when the copy was made'),
});
export type SnapshotCopy = v.InferOutput<typeof SnapshotCopySchema>;

export const SnapshotSchema = v.pipe(
  v.object({
    version: v.literal(1),
    time: about(isoDate(), 'start of the backup'),
    endTime: about(isoDate(), 'end of the backup'),
    host: about(v.string(), 'host name (or --host)'),
    username: about(v.string(), 'user running the backup'),
    paths: about(v.array(v.string()), 'absolute source paths, as given on the command line after resolution'),
    tags: about(v.array(v.string()), 'sorted; the CLI accepts KEY=VALUE'),
    parent: v.optional(about(hexId(), 'id of the snapshot used for change detection (in a copy: the copy of that snapshot, when it was copied too)')),
    tree: about(hexId(), 'root tree id: one node per backed-up path, named by its base name'),
    incomplete: v.optional(about(v.string(), 'set when items could not be read; the snapshot is then incomplete')),
    summary: about(SnapshotSummarySchema, 'the backup run (a repaired snapshot keeps it unchanged)'),
    program: about(v.string(), 'e.g. "meshback 0.1.0"'),
    repaired: v.optional(about(SnapshotRepairSchema, "written by 'repair snapshots' only")),
    copied: v.optional(about(SnapshotCopySchema, "written by 'copy' only: the snapshot this one is a copy of")),
  }),
  v.metadata({ title: 'meshback snapshot manifest', description: 'A file under snapshots/: Seal(encKey, this JSON), named by the SHA-256 of the sealed file (docs/design.md, "Snapshot manifest").' }),
);
export type Snapshot = v.InferOutput<typeof SnapshotSchema>;

export interface SnapshotRef {
  id: string;
  snapshot: Snapshot;
}
