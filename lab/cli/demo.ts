/**
 * meshback demo: the main job end to end on the embedded local repository, with the real
 * commands shown as they run: generate a mesh-like volume, back it up, damage the volume,
 * restore it in place from the snapshot, prove the restore byte-for-byte and
 * metadata-for-metadata, and read back every byte of the repository.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../../src/errors/index.ts';
import { compareTrees } from '../gen/compare.ts';
import { generateMeshVolume } from '../gen/gen.ts';
import { Rng } from '../gen/rng.ts';
import type { Command } from '../../src/cli/command.ts';
import { str } from '../../src/cli/command.ts';
import { EXIT } from '../../src/cli/exit.ts';
import { fmtBytes, parseSize } from '../../src/util/units.ts';


const MARKER = '.meshback-demo';

export const demoCommand: Command = {
  name: 'demo',
  summary: 'run the main job end to end on a generated volume: back up, damage, restore, verify',
  usage: 'meshback demo [--dir DIR] [--size SIZE] [--seed N]',
  options: {
    dir: { type: 'string', argument: 'DIR', description: 'working directory for the volume and the repository (default ./meshback-demo)' },
    size: { type: 'string', argument: 'SIZE', description: 'size of the generated volume (default 128MiB)' },
    seed: { type: 'string', argument: 'N', description: 'seed of the generated volume and the damage (default 1)' },
  },
  async run(ctx, v) {
    const dir = path.resolve(str(v['dir']) ?? 'meshback-demo');
    const size = parseSize(str(v['size']) ?? '128MiB', '--size');
    const seed = Number(str(v['seed']) ?? '1');
    if (!Number.isInteger(seed)) throw new UsageError('--seed must be an integer');
    if (existsSync(dir)) {
      if (!existsSync(path.join(dir, MARKER))) throw new UsageError(`${dir} exists and was not made by 'meshback demo': choose another --dir`);
      await fsp.rm(dir, { recursive: true, force: true });
    }
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(path.join(dir, MARKER), 'made by meshback demo\n');
    const volume = path.join(dir, 'volume');
    const pristine = path.join(dir, 'pristine');
    const repo = path.join(dir, 'repo');
    const pwFile = path.join(dir, 'password');
    await fsp.writeFile(pwFile, randomBytes(18).toString('base64') + '\n', { mode: 0o600 });
    const say = (s: string): void => ctx.out.result(s);

    say(`== 1. a mesh-like volume of ${fmtBytes(size)} (sidecar access logs, config dumps, metrics, certs, data blobs, small files)`);
    const stats = await generateMeshVolume(volume, { size, seed });
    await generateMeshVolume(pristine, { size, seed }); // an independent copy to compare against at the end
    say(`   ${volume}: ${stats.files} files, ${stats.dirs} dirs, ${fmtBytes(stats.bytes)}`);

    // this very build: dist/src/cli/main.js when running from dist/, src/cli/main.ts otherwise
    const main = fileURLToPath(new URL(import.meta.url.endsWith('.js') ? '../../src/cli/main.js' : '../../src/cli/main.ts', import.meta.url));
    const mb = (args: string[]): { code: number; stdout: string } => {
      say(`$ meshback ${args.join(' ')}`);
      const r = spawnSync(process.execPath, ['--disable-warning=ExperimentalWarning', main, ...args], {
        env: { ...process.env, MESHBACK_REPO: repo, MESHBACK_PASSWORD_FILE: pwFile, MESHBACK_PASSWORD: undefined },
        stdio: ['ignore', 'pipe', 'inherit'],
        encoding: 'utf8',
        maxBuffer: 64 * 1024 * 1024,
      });
      for (const line of (r.stdout ?? '').split('\n')) if (line !== '') say(`  ${line}`);
      return { code: r.status ?? 1, stdout: r.stdout ?? '' };
    };
    const must = (args: string[], okCodes = [0]): string => {
      const r = mb(args);
      if (!okCodes.includes(r.code)) throw new Error(`'meshback ${args.join(' ')}' exited with ${r.code}`);
      return r.stdout;
    };

    say('== 2. create the repository and back the volume up');
    must(['init']);
    const firstId = /snapshot ([0-9a-f]{8}) saved/.exec(must(['backup', volume, '--tag', 'demo=1']))?.[1];
    say('   a second backup with nothing changed reads no file content:');
    must(['backup', volume, '--tag', 'demo=1']);
    must(['snapshots']);

    say('== 3. damage the volume: flip bytes, truncate a file, delete files');
    const damaged = await damage(volume, seed);
    for (const d of damaged) say(`   ${d}`);
    const before = await compareTrees(pristine, volume, { owner: true, mtime: false });
    say(`   the volume now differs from the backed-up state in ${before.length} place(s)`);

    say('== 4. restore the volume in place from the snapshot, verified');
    must(['restore', firstId ?? 'latest', '--target', volume, '--verify']);

    say('== 5. prove it: compare every byte and every mode, owner and mtime with an untouched copy');
    const after = await compareTrees(pristine, volume, { owner: true, mtime: true });
    if (after.length > 0) {
      for (const d of after.slice(0, 20)) say(`   DIFFERENCE: ${d}`);
      say('DEMO FAILED: the restored volume differs from the original');
      return EXIT.INTEGRITY;
    }
    say(`   identical: ${stats.files} files, ${fmtBytes(stats.bytes)}`);

    say('== 6. read back and re-hash every byte in the repository');
    must(['check', '--read-data']);
    say(`demo passed. Everything is in ${dir} (password in ${pwFile}); try: MESHBACK_REPO=${repo} MESHBACK_PASSWORD_FILE=${pwFile} bin/meshback snapshots`);
    return EXIT.OK;
  },
};

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of (await fsp.readdir(d, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) out.push(p);
    }
  };
  await walk(dir);
  return out;
}

async function damage(volume: string, seed: number): Promise<string[]> {
  const rng = new Rng(seed * 7919 + 17);
  const files = (await listFiles(volume)).filter((f) => !f.endsWith(MARKER));
  const done: string[] = [];
  const pick = (): string => files.splice(rng.int(0, files.length - 1), 1)[0]!;
  for (let i = 0; i < 3 && files.length > 0; i++) {
    const f = pick();
    const st = await fsp.stat(f);
    if (st.size === 0) continue;
    const fh = await fsp.open(f, 'r+');
    const pos = rng.int(0, st.size - 1);
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, pos);
    b[0] = b[0]! ^ 0xff;
    await fh.write(b, 0, 1, pos);
    await fh.close();
    done.push(`flipped a byte at offset ${pos} of ${path.relative(volume, f)}`);
  }
  if (files.length > 0) {
    const f = pick();
    const st = await fsp.stat(f);
    await fsp.truncate(f, Math.floor(st.size / 2));
    done.push(`truncated ${path.relative(volume, f)} to half its size`);
  }
  for (let i = 0; i < 2 && files.length > 0; i++) {
    const f = pick();
    await fsp.unlink(f);
    done.push(`deleted ${path.relative(volume, f)}`);
  }
  return done;
}
