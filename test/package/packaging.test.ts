/**
 * The package as users get it: `npm pack`, the tarball installed with npm into a fresh Node-RED user
 * directory (no TypeScript anywhere near it), then Node-RED 4 on this Node and Node-RED 5 on Node 22:
 * every node type in package.json loads with a clean log, the icons are served, the examples are
 * listed, and the end-to-end example runs.
 *
 * Node-RED 5 and Node 22 come from the npm registry the first time (Node 22 through `npx -p node@22`,
 * Node-RED 5 installed under test-artifacts/). Without the network that part is skipped with a
 * message saying so, except in CI (CI set), where it fails.
 */
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { PACKAGE_ROOT, readPackageJson } from '../../scripts/node-red-setup';
import { demoFlows } from '../../scripts/start';
import { freePort, NodeRedRuntime, waitUntil, type FlowNode } from '../helpers/node-red-runtime';
import { assertCleanLog, isConnected, reportRuntimeOnFailure } from '../runtime/support';

const run = promisify(execFile);
/** npm and npx use their cache first and give up on an unreachable registry in about a minute. */
const NPM_ENV = { ...process.env, npm_config_prefer_offline: 'true', npm_config_fetch_retries: '1', npm_config_fetch_timeout: '30000' };
const pkg = readPackageJson();
const types = Object.keys(pkg['node-red']?.nodes ?? {});
const icons = readdirSync(path.join(PACKAGE_ROOT, 'icons')).filter((f) => /\.(svg|png)$/.test(f));
const examples = readdirSync(path.join(PACKAGE_ROOT, 'examples')).filter((f) => f.endsWith('.json'));

/** npm's own CLI script, to run it under another node binary. */
function npmCli(): string {
  const candidates = [process.env.npm_execpath ?? '', path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js')];
  const found = candidates.find((c) => c.endsWith('.js') && existsSync(c));
  if (!found) throw new Error('cannot find npm-cli.js');
  return found;
}

interface Runtime {
  nodeBinary: string;
  redJs: string;
}

/** Node 22 from the npm registry (cached by npx) and Node-RED 5 installed under test-artifacts/. */
async function nodeRed5(): Promise<Runtime> {
  const { stdout } = await run('npx', ['-y', '-p', 'node@22', 'node', '-p', 'process.execPath'], { timeout: 180_000, env: NPM_ENV });
  const nodeBinary = stdout.trim();
  const dir = path.join(PACKAGE_ROOT, 'test-artifacts', 'node-red-5');
  const redPackage = path.join(dir, 'node_modules', 'node-red', 'package.json');
  const installed = existsSync(redPackage) && (JSON.parse(readFileSync(redPackage, 'utf8')) as { version: string }).version.startsWith('5.');
  if (!installed) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'node-red-5-for-tests', version: '0.0.0', private: true }) + '\n');
    // npm runs under Node 22, so install scripts build for the Node that runs Node-RED 5.
    await run(nodeBinary, [npmCli(), 'install', '--no-audit', '--no-fund', '--prefer-offline', 'node-red@5'], { cwd: dir, timeout: 300_000, env: NPM_ENV });
  }
  return { nodeBinary, redJs: path.join(dir, 'node_modules', 'node-red', 'red.js') };
}

describe('the packed package in a real Node-RED', function () {
  this.timeout(300_000);
  let work: string;
  let tarball: string;
  let packed: string[];
  let runtime: NodeRedRuntime | undefined;
  const userDirs: string[] = [];

  before(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), 'iothub-pack-'));
    // npm test has just built, so the build is not run again; the manifest steps of prepack and postpack
    // are (they keep `prepare` out of the packed package.json), around a pack that runs no scripts.
    const manifestStep = (step: string) => run('node', [path.join(PACKAGE_ROOT, 'scripts', 'pack-manifest.js'), step], { cwd: PACKAGE_ROOT });
    await manifestStep('strip');
    let stdout: string;
    try {
      ({ stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: PACKAGE_ROOT }));
    } finally {
      await manifestStep('restore');
    }
    const [info] = JSON.parse(stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    tarball = path.join(work, info.filename);
    packed = info.files.map((f) => f.path);
  });

  afterEach(async function () {
    reportRuntimeOnFailure(this.currentTest, runtime);
    await runtime?.dispose();
    runtime = undefined;
  });

  after(() => {
    for (const dir of userDirs) rmSync(dir, { recursive: true, force: true });
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('holds the built runtime, editor files, locales, icons and examples, and no sources or tests', () => {
    const has = (file: string): void => assert.ok(packed.includes(file), `${file} is packed`);
    for (const type of types) {
      for (const file of [
        `nodes/${type}.js`,
        `nodes/${type}.html`,
        `nodes/locales/en-US/${type}.json`,
        `nodes/locales/de/${type}.json`,
        `dist/src/nodes/${type}.js`,
      ])
        has(file);
    }
    for (const icon of icons) has(`nodes/icons/${icon}`);
    for (const example of examples) has(`examples/${example}`);
    for (const file of ['package.json', 'README.md', 'LICENSE']) has(file);
    const stray = packed.filter(
      (f) => /^(src|test|scripts|dist\/test|dist\/scripts)\//.test(f) || (f.endsWith('.ts') && !f.endsWith('.d.ts')) || f.endsWith('.tsbuildinfo'),
    );
    assert.deepEqual(stray, []);
  });

  /** A fresh user directory with the tarball installed by npm, as the palette manager would. */
  async function installTarball(): Promise<string> {
    const userDir = mkdtempSync(path.join(os.tmpdir(), 'iothub-user-'));
    userDirs.push(userDir);
    writeFileSync(path.join(userDir, 'package.json'), JSON.stringify({ name: 'node-red-project', version: '0.0.1', private: true }) + '\n');
    const { stderr } = await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--omit=dev', tarball], {
      cwd: userDir,
      timeout: 180_000,
      env: NPM_ENV,
    });
    assert.ok(!/\bwarn\b/i.test(stderr), `npm install warned:\n${stderr}`);
    const installed = path.join(userDir, 'node_modules', ...pkg.name.split('/'));
    assert.ok(existsSync(path.join(installed, 'package.json')), 'the package is installed');
    assert.throws(() => require.resolve('typescript', { paths: [installed] }), /Cannot find module/, 'no TypeScript where the package runs');
    return userDir;
  }

  async function check(target: Runtime, major: number): Promise<void> {
    const userDir = await installTarball();
    runtime = await NodeRedRuntime.create({ userDir, linkPackage: false, probe: false, logLevel: 'info', nodeBinary: target.nodeBinary, redJs: target.redJs });
    const nodeRed = runtime;
    await nodeRed.start();
    assert.match(nodeRed.log, new RegExp(`Node-RED version: v${major}\\.`));

    // Every type of package.json's node-red.nodes, from the installed tarball, loaded without error.
    const sets = (await nodeRed.nodeSets()).filter((s) => s.module === pkg.name);
    for (const type of types) {
      const set = sets.find((s) => s.types.includes(type));
      assert.ok(set, `${type} is loaded`);
      assert.equal(set.err, undefined, `${type}: ${String(set.err)}`);
      assert.equal(set.enabled, true);
      assert.equal((set as { version?: string }).version, pkg.version);
    }
    const editor = await nodeRed.request('GET', '/nodes', undefined, { accept: 'text/html' });
    for (const type of types) assert.ok(editor.text.includes(`RED.nodes.registerType('${type}'`), `the editor gets ${type}`);

    for (const icon of icons) {
      const served = await nodeRed.request('GET', `/icons/${pkg.name}/${icon}`);
      assert.equal(served.status, 200, `icon ${icon}`);
      assert.match(String(served.headers['content-type']), icon.endsWith('.svg') ? /image\/svg\+xml/ : /image\/png/);
      assert.equal(served.text, readFileSync(path.join(PACKAGE_ROOT, 'icons', icon), 'utf8'));
    }

    const listed = await nodeRed.getJson<Array<{ fn?: string }>>(`/library/examples/flows/${pkg.name}`);
    assert.deepEqual(listed.map((e) => `${e.fn}.json`).sort(), [...examples].sort());

    // The end-to-end example runs: every IoT Hub node connects, telemetry goes round.
    const flow = demoFlows(path.join(PACKAGE_ROOT, 'examples', 'end-to-end.json'), await freePort());
    await nodeRed.deploy(flow);
    for (const node of flow.filter((n: FlowNode) => n.type.startsWith('iothub-') && n.type !== 'iothub-connection')) {
      await nodeRed.waitForStatus(node.id, isConnected, `${node.type} connected`, 60_000);
    }
    const telemetry = flow.find((n) => n.type === 'iothub-telemetry-in') as FlowNode;
    const sink = (telemetry.wires as string[][])[0][0];
    await waitUntil(() => nodeRed.debug.some((d) => d.id === sink), 'telemetry from the example in the debug sidebar', 60_000);
    await nodeRed.stop();
    assertCleanLog(nodeRed.log);
    const warnings = nodeRed.log.split('\n').filter((l) => /\[warn\]/.test(l) && /iothub/i.test(l));
    assert.deepEqual(warnings, [], 'no warning about this package');
  }

  it('Node-RED 4 on this Node: loads every node type, serves the icons, lists the examples, runs the end-to-end example', async () => {
    await check({ nodeBinary: process.execPath, redJs: require.resolve('node-red/red.js') }, 4);
  });

  it('Node-RED 5 on Node 22: the same', async function () {
    let target: Runtime;
    try {
      target = await nodeRed5();
    } catch (err) {
      const reason = `Node-RED 5 on Node 22 was not tested: could not get it from the npm registry (${(err as Error).message.split('\n')[0]})`;
      if (process.env.CI) throw new Error(reason);
      process.stdout.write(`      ${reason}\n`);
      this.skip();
    }
    await check(target, 5);
  });
});
