/**
 * cli/lab: the seam through which `meshback bench|testbed|demo` reach the lab (lab/: the
 * fault benchmark, the mesh testbed, the test-tree generators). The engine never imports the
 * lab: it is loaded here, by location and only when one of its commands runs, so `meshback
 * backup` never loads it and an installation without lab/ still runs every engine command.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { NotFoundError } from '../errors/index.ts';
import type { Command } from './command.ts';

/** The lab's commands, by name (their modules are not loaded until one is asked for). */
export const LAB_COMMAND_NAMES: readonly string[] = ['bench', 'testbed', 'demo'];

/** dist/src/cli/lab.js -> dist/lab/cli/index.js; src/cli/lab.ts -> lab/cli/index.ts. */
function labEntry(): URL {
  const ext = import.meta.url.endsWith('.js') ? 'js' : 'ts';
  return new URL(`../../lab/cli/index.${ext}`, import.meta.url);
}

export function labInstalled(): boolean {
  return existsSync(fileURLToPath(labEntry()));
}

/** The lab's commands; NotFoundError when this installation has no lab/. */
export async function loadLabCommands(): Promise<Command[]> {
  if (!labInstalled()) throw new NotFoundError(`the lab (meshback ${LAB_COMMAND_NAMES.join(', ')}) is not part of this installation: run these commands from a source checkout of meshback`);
  const mod = (await import(labEntry().href)) as { labCommands: Command[] };
  return mod.labCommands;
}
