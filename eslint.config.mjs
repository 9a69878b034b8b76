import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.node-red/**', 'nodes/*.js', 'test-artifacts/**', 'scratch/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/ban-ts-comment': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // rhea exports a container instance whose methods live on its prototype: `import x = require()`
      // keeps them, `import * as` (with esModuleInterop) does not.
      '@typescript-eslint/no-require-imports': ['error', { allowAsImport: true }],
    },
  },
  {
    // Node-RED node constructors are plain functions called with the node as `this`, and their
    // callbacks need it: `const node = this` is the idiom every Node-RED node uses.
    files: ['src/nodes/**/*.ts', 'test/helpers/test-user-node.ts'],
    rules: { '@typescript-eslint/no-this-alias': 'off' },
  },
  // The layering (docs/ARCHITECTURE.md): src/amqp holds what both sides share and imports neither; the client core knows no Node-RED and no simulator; the
  // simulator uses only the client's pure codecs, never its connection state; nodes reach the simulator
  // only through its index.
  {
    files: ['src/amqp/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['../iothub', '../iothub/*', '../nodes', '../nodes/*', '../simulator', '../simulator/*'],
              message: 'src/amqp is shared by the client and the simulator and imports neither',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['src/iothub/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: ['../nodes', '../nodes/*', '../simulator', '../simulator/*'], message: 'src/iothub knows neither Node-RED nor the simulator' }] },
      ],
    },
  },
  {
    files: ['src/simulator/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['../nodes', '../nodes/*'], message: 'the simulator knows no Node-RED' },
            {
              group: ['../iothub/*', '!../iothub/sas', '!../iothub/connection-string', '!../iothub/message'],
              message: "the simulator may use only the client's pure codecs (sas, connection-string, message)",
            },
          ],
        },
      ],
    },
  },
  {
    files: ['src/nodes/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: ['../simulator/*'], message: 'nodes reach the simulator only through its index (../simulator)' }] },
      ],
    },
  },
  {
    files: ['**/*.js'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { globals: { require: 'readonly', module: 'writable', process: 'readonly', console: 'readonly', __dirname: 'readonly' } },
  },
);
