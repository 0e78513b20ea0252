/** Snapshot manifests: what was backed up, when, from where, and the root tree. */

export interface SnapshotSummary {
  files: number;
  dirs: number;
  symlinks: number;
  others: number;
  /** bytes of all files in the snapshot */
  totalBytes: number;
  /** bytes actually read from the source during this backup */
  bytesRead: number;
  filesRead: number;
  filesUnchanged: number;
  filesChangedDuringRead: number;
  errors: number;
  blobsAdded: number;
  /** raw (uncompressed) bytes of new blobs */
  bytesAdded: number;
  /** bytes of new files written to the repository */
  bytesStored: number;
  /** seconds */
  duration: number;
}

export interface Snapshot {
  version: 1;
  time: string;
  endTime: string;
  host: string;
  username: string;
  /** absolute source paths, as given on the command line after resolution */
  paths: string[];
  tags: string[];
  parent?: string;
  /** root tree id (hex): one node per backed-up path, named by its base name */
  tree: string;
  /** set when items could not be read; the snapshot is then incomplete */
  incomplete?: string;
  summary: SnapshotSummary;
  program: string;
  /**
   * Set by 'repair snapshots' on the snapshot it writes in place of a damaged one (which it
   * then deletes); the snapshot also gets the tag 'repaired'. `summary` still describes the
   * original backup run.
   */
  repaired?: SnapshotRepair;
}

export interface SnapshotRepair {
  /** id of the snapshot this one replaces */
  original: string;
  /** ISO-8601 time of the repair */
  time: string;
  /** files left out because some of their data is missing or damaged (paths from the root tree) */
  droppedFiles: string[];
  /** directories left out because their listing (tree) is missing or damaged */
  droppedDirs: string[];
}

export interface SnapshotRef {
  id: string;
  snapshot: Snapshot;
}
