/**
 * Build: strips the TypeScript types of src/ (the engine) and lab/ (bench, testbed, generators,
 * testenv) into dist/src and dist/lab (plain ESM JavaScript, same line and
 * column positions, relative `.ts` specifiers rewritten to `.js`). bin/meshback runs dist/ when it
 * is up to date and falls back to the sources (Node's type stripping) when it is not.
 *
 * Why a build at all: loading the sources through type stripping costs about 40 MiB of memory
 * and 0.1-0.15 s per process (measured in docs/runtime.md), which is most of a no-change
 * backup's footprint.
 *   bin/node scripts/build.ts        (run by `npm ci` through "prepare", and by `npm test`)
 */
import { cpSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import * as path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const TREES = ['src', 'lab'];
const out = path.join(root, 'dist');
const tmp = path.join(root, `dist.tmp-${process.pid}`);

// relative specifiers in import/export ... from '...ts' and import('...ts'); other strings are left alone
const SPECIFIER = /((?:from|import)\s*\(?\s*['"]\.{1,2}\/[^'"]+)\.ts(['"])/g;

let files = 0;
function walk(dir: string): void {
  if (!statSync(dir, { throwIfNoEntry: false })?.isDirectory()) return;
  for (const name of readdirSync(dir).sort()) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) {
      walk(p);
      continue;
    }
    if (!name.endsWith('.ts')) continue;
    const js = stripTypeScriptTypes(readFileSync(p, 'utf8'), { mode: 'strip' }).replace(SPECIFIER, '$1.js$2');
    const o = path.join(tmp, path.relative(root, p).replace(/\.ts$/, '.js'));
    mkdirSync(path.dirname(o), { recursive: true });
    writeFileSync(o, js);
    files++;
  }
}

rmSync(tmp, { recursive: true, force: true });
for (const t of TREES) walk(path.join(root, t));
// the web dashboard's files (plain HTML, CSS and browser modules) are served as they are, from
// dist/src/server/ui when the engine runs from dist (src/server/ui-routes.ts finds them beside itself)
cpSync(path.join(root, 'src/server/ui'), path.join(tmp, 'src/server/ui'), { recursive: true });
writeFileSync(path.join(tmp, 'package.json'), '{ "type": "module" }\n');
// the stamp is written last: bin/meshback uses dist/ only when no source is newer than it
writeFileSync(path.join(tmp, '.build-stamp'), `${new Date().toISOString()}\n`);
rmSync(out, { recursive: true, force: true });
renameSync(tmp, out);
process.stdout.write(`build: ${files} files from src/ and lab/ to dist/\n`);
