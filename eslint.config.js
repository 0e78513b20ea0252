// Lint: typescript-eslint's recommended rules, plus the layer rule: lower layers never
// import from higher ones (errors/events -> blob -> crypto/chunker/parity -> content -> snapshot ->
// repository -> archiver/restorer/checker/maintenance -> bench/testbed -> cli), and nothing below cli/ prints.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const layers = [
  ['src/errors/**', 'src/events/**'],
  ['src/blob/**'],
  ['src/crypto/**', 'src/chunker/**', 'src/parity/**'],
  ['src/content/**'],
  ['src/snapshot/**'],
  ['src/repository/**'],
  ['src/archiver/**', 'src/restorer/**', 'src/checker/**', 'src/maintenance/**'],
  ['src/bench/**', 'src/testbed/**'],
  ['src/cli/**'],
];
const names = ['errors', 'events', 'blob', 'crypto', 'chunker', 'parity', 'content', 'snapshot', 'repository', 'archiver', 'restorer', 'checker', 'maintenance', 'bench', 'testbed', 'cli'];
const levelOf = { errors: 0, events: 0, blob: 1, crypto: 2, chunker: 2, parity: 2, content: 3, snapshot: 4, repository: 5, archiver: 6, restorer: 6, checker: 6, maintenance: 6, bench: 7, testbed: 7, cli: 8 };
const layerRules = layers.map((files, lvl) => ({
  files,
  rules: {
    'no-restricted-imports': ['error', { patterns: names.filter((n) => levelOf[n] > lvl).map((n) => ({ group: [`**/${n}/*`, `../${n}/*`, `../../${n}/*`], message: `layer rule: ${n}/ is above this layer` })) }],
  },
}));

export default tseslint.config(
  { ignores: ['node_modules/**', 'bench-results/**', 'dist/**', 'dist.tmp-*/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2024, sourceType: 'module', globals: { process: 'readonly', Buffer: 'readonly', console: 'readonly', setTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', clearTimeout: 'readonly', setImmediate: 'readonly', performance: 'readonly', URL: 'readonly', TextDecoder: 'readonly', TextEncoder: 'readonly', SharedArrayBuffer: 'readonly', Atomics: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  ...layerRules,
  {
    files: ['src/**'],
    ignores: ['src/cli/**', 'src/testing/**'],
    rules: { 'no-console': 'error' },
  },
);
