/**
 * The Node-RED flow library's checks (what `node-red-dev validate` scores; it needs the network, so
 * its rules are checked here): package metadata, examples for every palette node, few dependencies,
 * and editor files whose registerType call a parser can read without running it.
 */
import { strict as assert } from 'node:assert';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import ts from 'typescript';
import { PACKAGE_ROOT, readPackageJson } from '../../scripts/node-red-setup';

const pkg = readPackageJson();
const types = Object.keys(pkg['node-red']?.nodes ?? {});

/** Whether `version` satisfies a range made of plain comparators (`>=4.0.0`, `>=20 <23`). */
function satisfies(version: string, range: string): boolean {
  const parse = (v: string): number[] =>
    v
      .replace(/^v/, '')
      .split('.')
      .map((p) => Number(p) || 0)
      .concat([0, 0, 0])
      .slice(0, 3);
  const compare = (a: number[], b: number[]): number => a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
  const have = parse(version);
  return range
    .trim()
    .split(/\s+/)
    .every((comparator) => {
      const m = /^(>=|<=|>|<|=)?v?(\d+(?:\.\d+){0,2})$/.exec(comparator);
      if (!m) throw new Error(`cannot read the range part "${comparator}"`);
      const c = compare(have, parse(m[2]));
      switch (m[1]) {
        case '>=':
          return c >= 0;
        case '<=':
          return c <= 0;
        case '>':
          return c > 0;
        case '<':
          return c < 0;
        default:
          return c === 0;
      }
    });
}

interface Registration {
  type: string;
  options: ts.ObjectLiteralExpression;
  source: ts.SourceFile;
}

/** Every RED.nodes.registerType call in the editor file's scripts, as a parser sees them. */
function registrations(html: string, htmlFile: string): Array<{ args: readonly ts.Expression[]; source: ts.SourceFile }> {
  const found: Array<{ args: readonly ts.Expression[]; source: ts.SourceFile }> = [];
  const scripts = html.matchAll(/<script type="text\/javascript">([\s\S]*?)<\/script>/g);
  for (const [, code] of scripts) {
    const source = ts.createSourceFile(htmlFile, code, ts.ScriptTarget.ES2020, true, ts.ScriptKind.JS);
    const visit = (node: ts.Node): void => {
      if (ts.isCallExpression(node) && node.expression.getText(source) === 'RED.nodes.registerType') found.push({ args: node.arguments, source });
      ts.forEachChild(node, visit);
    };
    visit(source);
  }
  return found;
}

function registrationOf(type: string): Registration {
  const file = path.join(PACKAGE_ROOT, 'nodes', `${type}.html`);
  return registrationIn(readFileSync(file, 'utf8'), file, type);
}

function registrationIn(html: string, file: string, type: string): Registration {
  const calls = registrations(html, file);
  assert.equal(calls.length, 1, `${type}.html registers exactly one type`);
  const [first, second] = calls[0].args;
  assert.ok(first && ts.isStringLiteral(first), `${type}: the type is a string literal`);
  assert.equal(first.text, type);
  assert.ok(second && ts.isObjectLiteralExpression(second), `${type}: the options are an object literal`);
  return { type, options: second, source: calls[0].source };
}

function property(options: ts.ObjectLiteralExpression, name: string): ts.Expression | undefined {
  for (const p of options.properties) {
    if (ts.isPropertyAssignment(p) && p.name.getText() === name) return p.initializer;
  }
  return undefined;
}

function literalText(options: ts.ObjectLiteralExpression, name: string): string | undefined {
  const value = property(options, name);
  return value && ts.isStringLiteral(value) ? value.text : undefined;
}

describe('flow library checks', () => {
  it('the package name is scoped or node-red-contrib-, and is a valid npm name', () => {
    assert.match(pkg.name, /^(@[a-z0-9][a-z0-9._~-]*\/[a-z0-9][a-z0-9._~-]*|node-red-contrib-[a-z0-9._~-]+)$/);
    assert.ok(pkg.name.length <= 214);
  });

  it('has the node-red keyword, a repository, a license file and a README', () => {
    assert.ok(pkg.keywords?.includes('node-red'), 'keyword node-red');
    const repository = typeof pkg.repository === 'string' ? pkg.repository : pkg.repository?.url;
    assert.match(String(repository), /^(git\+)?https:\/\/|^git@|^github:/);
    assert.ok(pkg.license && /^[A-Za-z0-9.+-]+$/.test(pkg.license), 'an SPDX license');
    for (const file of ['LICENSE', 'README.md']) {
      assert.ok(existsSync(path.join(PACKAGE_ROOT, file)), `${file} exists`);
      assert.ok(pkg.files?.includes(file), `${file} is packed`);
    }
  });

  it('declares node-red.version for Node-RED 4 and 5, and engines.node for the Node it runs on', () => {
    const range = pkg['node-red']?.version;
    assert.ok(range, 'node-red.version');
    assert.ok(satisfies('4.0.0', range) && satisfies('4.1.15', range) && satisfies('5.0.0', range), `node-red.version ${range}`);
    assert.ok(!satisfies('3.1.0', range), 'Node-RED 3 is not claimed');
    const node = pkg.engines?.node;
    assert.ok(node, 'engines.node');
    assert.ok(satisfies(process.versions.node, node) && satisfies('22.9.0', node), `engines.node ${node}`);
  });

  it('has at most six runtime dependencies', () => {
    const count = Object.keys(pkg.dependencies ?? {}).length;
    assert.ok(count <= 6, `${count} dependencies`);
  });

  it('every node type has its editor file, and every palette node is used in some example', () => {
    assert.ok(types.length >= 6, `node types: ${types.join(', ')}`);
    const used = new Set<string>();
    const examples = readdirSync(path.join(PACKAGE_ROOT, 'examples')).filter((f) => f.endsWith('.json'));
    for (const file of examples) {
      for (const n of JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'examples', file), 'utf8')) as Array<{ type: string }>) used.add(n.type);
    }
    for (const type of types) {
      assert.ok(existsSync(path.join(PACKAGE_ROOT, 'nodes', `${type}.html`)), `${type}.html`);
      const palette = literalText(registrationOf(type).options, 'category') !== 'config';
      if (palette) assert.ok(used.has(type), `${type} is used in an example`);
    }
    assert.ok(pkg.files?.includes('examples') && pkg.files.includes('nodes'), 'examples and nodes are packed');
  });

  it('each editor file calls RED.nodes.registerType with a literal type and a literal options object naming its category, defaults and icon', () => {
    const icons = new Set(readdirSync(path.join(PACKAGE_ROOT, 'icons')));
    for (const type of types) {
      const { options } = registrationOf(type);
      const category = literalText(options, 'category');
      assert.ok(category, `${type}: a literal category`);
      assert.ok(property(options, 'defaults') && ts.isObjectLiteralExpression(property(options, 'defaults') as ts.Expression), `${type}: literal defaults`);
      if (category === 'config') continue;
      const icon = literalText(options, 'icon');
      assert.ok(icon, `${type}: a literal icon`);
      assert.ok(icon.startsWith('font-awesome/') || icons.has(icon), `${type}: icon ${icon} is in icons/`);
      assert.ok(literalText(options, 'paletteLabel'), `${type}: a palette label`);
    }
  });

  it('the checks refuse a computed type or options, and ranges that do not cover', () => {
    const wrap = (code: string): string => `<script type="text/javascript">${code}</script>`;
    assert.throws(() => registrationIn(wrap("const o = { category: 'x' }; RED.nodes.registerType('t', o);"), 't.html', 't'), /object literal/);
    assert.throws(() => registrationIn(wrap("const t = 't'; RED.nodes.registerType(t, { category: 'x' });"), 't.html', 't'), /string literal/);
    assert.doesNotThrow(() => registrationIn(wrap("RED.nodes.registerType('t', { category: 'x' });"), 't.html', 't'));
    assert.ok(satisfies('4.0.0', '>=4.0.0') && !satisfies('3.9.9', '>=4.0.0'));
    assert.ok(satisfies('20.1.0', '>=20 <23') && !satisfies('23.0.0', '>=20 <23'));
  });
});
