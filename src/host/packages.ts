/**
 * host/packages: privileges and Debian packages: is this process root, and installing a missing
 * program's package with apt-get (only as root; the caller names the package in its message
 * otherwise).
 */
import { run } from './process.ts';

export const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;

let aptUpdated = false;

/**
 * Install Debian packages with apt-get when running as root (`apt-get update -qq` once per
 * process, then `apt-get install -y -qq`). Returns an error message, or undefined on success.
 */
export async function aptInstall(packages: string[]): Promise<string | undefined> {
  if (packages.length === 0) return undefined;
  if (!isRoot()) return `not root: install the Debian package(s) ${packages.join(' ')}`;
  const env = { ...(process.env as Record<string, string>), DEBIAN_FRONTEND: 'noninteractive' };
  try {
    if (!aptUpdated) {
      await run(['apt-get', 'update', '-qq'], { env });
      aptUpdated = true;
    }
    await run(['apt-get', 'install', '-y', '-qq', ...packages], { env });
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

