/**
 * host/self: where this installation of meshback lives, for the parts that run meshback as a
 * separate process (the lab's benchmarks and testbed, and a server running its jobs).
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The installation's root: src/host/ from the sources, dist/src/host/ from the build. */
export const ROOT = ((): string => {
  const up = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  return path.basename(up) === 'dist' ? path.dirname(up) : up;
})();

/** The meshback launcher (runs dist/ when built, else the sources). */
export const MESHBACK_BIN = path.join(ROOT, 'bin/meshback');
