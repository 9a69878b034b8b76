/**
 * Message catalogs and help: every node type has both languages, the same keys in each, a real German
 * help text, and every key the editor or the runtime asks for exists (a missing key shows as raw text).
 */
import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '../../..');
const LANGS = ['en-US', 'de'];

interface Catalog {
  [key: string]: string | Catalog;
}

const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { 'node-red': { nodes: Record<string, string> } };
const types = Object.keys(pkg['node-red'].nodes);

function catalog(lang: string, type: string): Catalog {
  return JSON.parse(readFileSync(path.join(ROOT, 'nodes', 'locales', lang, `${type}.json`), 'utf8')) as Catalog;
}

function keys(c: Catalog, prefix = ''): string[] {
  return Object.entries(c).flatMap(([k, v]) => (typeof v === 'string' ? [prefix + k] : keys(v, `${prefix}${k}.`)));
}

function has(c: Catalog, key: string): boolean {
  let at: string | Catalog | undefined = c;
  for (const part of key.split('.')) {
    if (typeof at !== 'object') return false;
    at = at[part];
  }
  return typeof at === 'string' && at.trim() !== '';
}

/** Status keys a node's runtime code can set: its own file's, plus those every palette node shares. */
function statusKeysOf(file: string): string[] {
  const source = readFileSync(path.join(ROOT, 'src', 'nodes', file), 'utf8');
  return [...source.matchAll(/'(iothub-[a-z-]+\.status\.[a-z-]+)'/g)].map((m) => m[1] as string);
}

describe('locales', () => {
  it('the package registers node types to check', () => {
    assert.ok(types.includes('iothub-connection'), 'iothub-connection registered');
    assert.ok(types.length >= 4, `types: ${types.join(', ')}`);
  });

  for (const type of types) {
    describe(type, () => {
      it('has the same catalog keys in en-US and de, none empty', () => {
        const en = keys(catalog('en-US', type)).sort();
        const de = keys(catalog('de', type)).sort();
        assert.deepEqual(de, en);
        for (const lang of LANGS) for (const key of en) assert.ok(has(catalog(lang, type), key), `${lang} ${key} is empty`);
      });

      it('has every key its edit dialog asks for', () => {
        const html = readFileSync(path.join(ROOT, 'nodes', `${type}.html`), 'utf8');
        const asked = [
          ...[...html.matchAll(/data-i18n="(?:\[[a-z]+\])?([^"]+)"/g)].map((m) => m[1] as string),
          ...[...html.matchAll(/\._\('([a-z0-9-]+\.[a-zA-Z0-9.-]+)'\)/g)].map((m) => m[1] as string),
        ].filter((key) => !key.includes(':'));
        assert.ok(asked.length > 0, 'the dialog uses the catalog');
        for (const lang of LANGS) {
          const c = catalog(lang, type);
          for (const key of asked) assert.ok(has(c, key), `${lang}/${type}.json lacks ${key}`);
        }
      });

      it('has every status key its runtime code and the shared helpers set', () => {
        const shared = [...statusKeysOf('common.ts'), ...statusKeysOf('status.ts')];
        const own = statusKeysOf(`${type}.ts`);
        const needed = type === 'iothub-connection' ? [...own, ...statusKeysOf('status.ts')] : [...own, ...shared];
        assert.ok(needed.length > 0);
        for (const lang of LANGS) {
          const c = catalog(lang, type);
          for (const key of needed) assert.ok(has(c, key), `${lang}/${type}.json lacks ${key}`);
        }
      });

      it('has help in both languages, with the Node-RED help sections, and the German one is translated', () => {
        const help = Object.fromEntries(LANGS.map((lang) => [lang, readFileSync(path.join(ROOT, 'nodes', 'locales', lang, `${type}.html`), 'utf8')])) as Record<
          string,
          string
        >;
        for (const lang of LANGS) {
          assert.match(help[lang] as string, new RegExp(`data-help-name="${type}"`));
        }
        assert.match(help['en-US'] as string, /<h3>Details<\/h3>/);
        assert.match(help['en-US'] as string, /<h3>References<\/h3>/);
        assert.match(help.de as string, /<h3>Referenzen<\/h3>/);
        assert.notEqual(help.de, help['en-US']);
      });
    });
  }

  it('no catalog file exists for a type the package does not register', () => {
    for (const lang of LANGS) {
      for (const file of readdirSync(path.join(ROOT, 'nodes', 'locales', lang))) {
        assert.ok(types.includes(file.replace(/\.(json|html)$/, '')), `${lang}/${file}`);
      }
    }
  });
});
