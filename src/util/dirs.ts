/**
 * util/dirs: where meshback keeps what is its own on this machine, by the XDG base directory
 * specification: the metadata cache (cache) and the scheduler's state (state).
 */
import * as os from 'node:os';
import * as path from 'node:path';

const XDG = { cache: { env: 'XDG_CACHE_HOME', home: ['.cache'] }, state: { env: 'XDG_STATE_HOME', home: ['.local', 'state'] } } as const;

/** $XDG_CACHE_HOME/meshback or $XDG_STATE_HOME/meshback (an absolute one), else ~/.cache/meshback or ~/.local/state/meshback. */
export function meshbackDir(kind: keyof typeof XDG, env: NodeJS.ProcessEnv = process.env): string {
  const x = XDG[kind];
  const v = env[x.env];
  return path.join(v !== undefined && v !== '' && path.isAbsolute(v) ? v : path.join(os.homedir(), ...x.home), 'meshback');
}
