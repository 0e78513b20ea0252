// Lint: typescript-eslint's recommended rules, plus the layer rule (meshback/layers): every folder
// of the engine (src/) and of the lab (lab/) has a level (LAYERS below, drawn in docs/design.md);
// a file may import only from its own folder or from a folder of a lower level. Folders of one
// level never import each other, so no folder cycle can form; the engine never imports the lab
// (the CLI reaches the lab only through src/cli/lab.ts, by location, when a lab command runs).
// scripts/layers.ts checks the whole folder graph for cycles too. Nothing below a front end prints.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import * as path from 'node:path';

/** Folder -> level. A new folder needs a line here: lint fails on a file in a folder without one. */
export const LAYERS = {
  // the engine, bottom up
  'src/errors': 0, 'src/events': 0,
  'src/util': 1,
  'src/host': 2, 'src/storage': 2,
  'src/crypto': 3, 'src/chunker': 3, 'src/parity': 3, 'src/volumes': 3,
  'src/content': 4,
  'src/snapshot': 5,
  'src/repository': 6,
  'src/source': 7, 'src/target': 7,
  'src/archiver': 8, 'src/restorer': 8, 'src/checker': 8, 'src/maintenance': 8, 'src/copier': 8,
  'src/index.ts': 9, // the library API
  'src/policy': 9, // the policy engine: policy files and runs, above the operations it composes
  'src/server': 10, 'src/k8s': 10, // front ends' services: the HTTP API and metrics | the Kubernetes controller and agent
  'src/cli': 11, // the command line, which starts them
  // the lab (may import the engine; the engine never imports it)
  'lab/gen': 20,
  'lab/faults': 21, 'lab/testenv': 21,
  'lab/testbed': 22,
  'lab/bench': 23,
  'lab/cli': 24,
};

/** 'src/cli', 'lab/bench', 'src/index.ts' for a file below the project root; undefined outside src/ and lab/. */
export function folderOf(rel) {
  const parts = rel.split(path.sep);
  if (parts[0] !== 'src' && parts[0] !== 'lab') return undefined;
  return `${parts[0]}/${parts[1]}`;
}

const layersRule = {
  meta: { type: 'problem', schema: [], messages: { v: '{{msg}}' } },
  create(context) {
    const root = context.cwd;
    const file = context.filename;
    const from = folderOf(path.relative(root, file));
    if (from === undefined) return {};
    const check = (node, spec) => {
      if (typeof spec !== 'string' || !spec.startsWith('.')) return;
      const to = folderOf(path.relative(root, path.resolve(path.dirname(file), spec)));
      if (to === undefined || to === from) return;
      const lf = LAYERS[from];
      const lt = LAYERS[to];
      let msg;
      if (lt === undefined) msg = `layer rule: ${to} has no level: add it to LAYERS in eslint.config.js`;
      else if (from.startsWith('src/') && to.startsWith('lab/')) msg = `layer rule: the engine never imports the lab (${from} -> ${to}); a lab command is reached through src/cli/lab.ts`;
      else if (lt > lf) msg = `layer rule: ${from} (level ${lf}) imports ${to} (level ${lt}), which is above it`;
      else if (lt === lf) msg = `layer rule: ${from} and ${to} are on one level (${lf}) and never import each other (that is how folder cycles start): move the shared part down a level`;
      if (msg !== undefined) context.report({ node, messageId: 'v', data: { msg } });
    };
    return {
      Program(node) {
        if (LAYERS[from] === undefined) context.report({ node, messageId: 'v', data: { msg: `layer rule: folder ${from} has no level: add it to LAYERS in eslint.config.js` } });
      },
      ImportDeclaration: (n) => check(n, n.source.value),
      ExportNamedDeclaration: (n) => n.source && check(n, n.source.value),
      ExportAllDeclaration: (n) => check(n, n.source.value),
      ImportExpression: (n) => n.source.type === 'Literal' && check(n, n.source.value),
    };
  },
};

export default tseslint.config(
  { ignores: ['node_modules/**', 'bench-results/**', 'dist/**', 'dist.tmp-*/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2024, sourceType: 'module', globals: { process: 'readonly', Buffer: 'readonly', console: 'readonly', setTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', clearTimeout: 'readonly', setImmediate: 'readonly', performance: 'readonly', URL: 'readonly', TextDecoder: 'readonly', TextEncoder: 'readonly', SharedArrayBuffer: 'readonly', Atomics: 'readonly' } },
    plugins: { meshback: { rules: { layers: layersRule } } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
      'meshback/layers': 'error',
    },
  },
  {
    // nothing below a front end prints: the engine reports through events, the lab through its CLI
    files: ['src/**', 'lab/**'],
    ignores: ['src/cli/**', 'lab/cli/**', 'lab/gen/**', 'lab/testenv/cli.ts'],
    rules: { 'no-console': 'error' },
  },
  {
    // the web dashboard: plain browser modules served as they are (src/server/ui; no build step)
    files: ['src/server/ui/**/*.js'],
    languageOptions: { globals: { document: 'readonly', window: 'readonly', sessionStorage: 'readonly', history: 'readonly', location: 'readonly', fetch: 'readonly', Node: 'readonly', URL: 'readonly', CSS: 'readonly' } },
  },
);
