/**
 * Snapshot manifests: what was backed up, when, from where, and the root tree. The schema is the
 * format's definition (docs/schemas/snapshot.json); the types are inferred from it.
 */
import { hexId, isoDate, z } from '../util/schema.ts';

const count = () => z.int().min(0);

export const SnapshotSummarySchema = z.object({
  files: count(),
  dirs: count(),
  symlinks: count(),
  others: count(),
  totalBytes: count().describe('bytes of all files in the snapshot'),
  bytesRead: count().describe('bytes actually read from the source during this backup'),
  filesRead: count(),
  filesUnchanged: count(),
  filesChangedDuringRead: count(),
  errors: count(),
  blobsAdded: count(),
  bytesAdded: count().describe('raw (uncompressed) bytes of new blobs'),
  bytesStored: count().describe('bytes of new files written to the repository'),
  duration: z.number().min(0).describe('seconds'),
});
export type SnapshotSummary = z.infer<typeof SnapshotSummarySchema>;

/**
 * Set by 'repair snapshots' on the snapshot it writes in place of a damaged one (which it then
 * deletes); the snapshot also gets the tag 'repaired'. `summary` still describes the original
 * backup run.
 */
export const SnapshotRepairSchema = z.object({
  original: hexId().describe('id of the snapshot this one replaces'),
  time: isoDate().describe('when the repair ran'),
  droppedFiles: z.array(z.string()).describe('files left out because some of their data is missing or damaged (paths from the root tree)'),
  droppedDirs: z.array(z.string()).describe('directories left out because their listing (tree) is missing or damaged'),
});
export type SnapshotRepair = z.infer<typeof SnapshotRepairSchema>;

export const SnapshotSchema = z
  .object({
    version: z.literal(1),
    time: isoDate().describe('start of the backup'),
    endTime: isoDate().describe('end of the backup'),
    host: z.string().describe('host name (or --host)'),
    username: z.string().describe('user running the backup'),
    paths: z.array(z.string()).describe('absolute source paths, as given on the command line after resolution'),
    tags: z.array(z.string()).describe('sorted; the CLI accepts KEY=VALUE'),
    parent: hexId().optional().describe('id of the snapshot used for change detection'),
    tree: hexId().describe('root tree id: one node per backed-up path, named by its base name'),
    incomplete: z.string().optional().describe('set when items could not be read; the snapshot is then incomplete'),
    summary: SnapshotSummarySchema.describe('the backup run (a repaired snapshot keeps it unchanged)'),
    program: z.string().describe('e.g. "meshback 0.1.0"'),
    repaired: SnapshotRepairSchema.optional().describe("written by 'repair snapshots' only"),
  })
  .meta({ title: 'meshback snapshot manifest', description: 'A file under snapshots/: Seal(encKey, this JSON), named by the SHA-256 of the sealed file (docs/design.md, "Snapshot manifest").' });
export type Snapshot = z.infer<typeof SnapshotSchema>;

export interface SnapshotRef {
  id: string;
  snapshot: Snapshot;
}
