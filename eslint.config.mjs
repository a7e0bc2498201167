// ESLint for weave-ts: typescript-eslint's recommended type-checked rules, run by `npm test`
// before the tests (scripts/test.sh). Each rule turned off or tuned here says why.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'router/native/build/**', '**/*.js', '**/*.mjs', '**/*.cjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // `_name` marks a parameter an interface requires but this implementation does not use.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // Implementations of async interfaces (Overlay.start, Command.run) are async even when this
      // one has nothing to await; the contract, not the body, decides.
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    // The addon's exports are plain C callbacks (N-API) that never use `this`.
    files: ['router/native/aead.ts'],
    rules: { '@typescript-eslint/unbound-method': 'off' },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      // Tests read JSON answers of real daemons and engines (`r.body.IPAM.Entries`): typing every
      // one would restate the product's types in the tests. Production code keeps these rules.
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-explicit-any': 'off',
      // uvu's `assert.ok` and friends are plain functions; passing them around is fine.
      '@typescript-eslint/unbound-method': 'off',
      // Failure messages print arrays of names and addresses as they are.
      '@typescript-eslint/restrict-template-expressions': ['error', { allowArray: true, allowNumber: true, allowBoolean: true, allowNullish: true }],
    },
  },
)
