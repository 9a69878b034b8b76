/**
 * Prepares a Node-RED user directory: a settings.js and this package available to the runtime.
 * Shared by `npm start` and the tests that run a real Node-RED process.
 */
import { existsSync, lstatSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';

export const PACKAGE_ROOT = path.resolve(__dirname, '..', '..');

export interface PackageJson {
  name: string;
  version: string;
  description?: string;
  keywords?: string[];
  license?: string;
  repository?: string | { type?: string; url?: string };
  engines?: Record<string, string>;
  files?: string[];
  dependencies?: Record<string, string>;
  'node-red'?: { version?: string; nodes?: Record<string, string> };
}

export function readPackageJson(dir = PACKAGE_ROOT): PackageJson {
  return JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as PackageJson;
}

export interface SettingsOptions {
  port: number;
  /** Node-RED console log level. */
  logLevel?: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
  /** A fixed key for the credentials file; without it Node-RED makes one and warns about it. */
  credentialSecret?: string;
  /**
   * Serves GET <admin>/_probe/process with the runtime's own counts (heap after GC, active handles by
   * type, process listeners by event, live instances of the classes named). Only for tests: it lets
   * a test watch a real Node-RED for leaks.
   */
  probe?: boolean | { classes: ProbeClass[] };
}

/** A class whose live instances the probe counts: the module's absolute path and the export name. */
export interface ProbeClass {
  name: string;
  module: string;
  export: string;
}

/** The text of a settings.js: loopback only, a memory and a file context store, log to stdout. */
export function settingsSource(options: SettingsOptions): string {
  const settings: Record<string, unknown> = {
    uiHost: '127.0.0.1',
    uiPort: options.port,
    flowFile: 'flows.json',
    contextStorage: { default: { module: 'memory' }, file: { module: 'localfilesystem' } },
    logging: { console: { level: options.logLevel ?? 'info', metrics: false, audit: false } },
    debugMaxLength: 10_000,
    diagnostics: { enabled: true, ui: false },
    telemetry: { enabled: false, updateNotification: false },
    externalModules: { autoInstall: false, palette: { allowInstall: false } },
    editorTheme: { tours: false },
  };
  if (options.credentialSecret) settings.credentialSecret = options.credentialSecret;
  const lines = [
    '// Written by scripts/node-red-setup.ts; rewritten on every start.',
    "'use strict';",
    `module.exports = ${JSON.stringify(settings, null, 2)};`,
  ];
  if (options.probe) {
    const classes = typeof options.probe === 'object' ? options.probe.classes : [];
    lines.push(`module.exports.httpAdminMiddleware = (${PROBE.trim()})(${JSON.stringify(classes)});`);
  }
  return lines.join('\n') + '\n';
}

// Plain JavaScript on purpose: it is written into settings.js and runs inside Node-RED. Instances
// are counted with the inspector's Runtime.queryObjects, which walks the heap for a prototype.
const PROBE = `
function makeProbe(classes) {
  const inspector = require('node:inspector');
  const session = new inspector.Session();
  session.connect();
  const post = (method, params) => new Promise((resolve, reject) => session.post(method, params, (err, result) => (err ? reject(err) : resolve(result))));
  async function instances() {
    const counts = {};
    for (const c of classes) {
      global.__probePrototype = require(c.module)[c.export].prototype;
      const proto = await post('Runtime.evaluate', { expression: 'globalThis.__probePrototype', objectGroup: 'probe' });
      const found = await post('Runtime.queryObjects', { prototypeObjectId: proto.result.objectId, objectGroup: 'probe' });
      const length = await post('Runtime.callFunctionOn', { objectId: found.objects.objectId, functionDeclaration: 'function () { return this.length; }', returnByValue: true, objectGroup: 'probe' });
      counts[c.name] = length.result.value;
      delete global.__probePrototype;
      await post('Runtime.releaseObjectGroup', { objectGroup: 'probe' });
    }
    return counts;
  }
  return function probe(req, res, next) {
    if (req.method !== 'GET' || req.url !== '/_probe/process') return next();
    if (typeof global.gc === 'function') { global.gc(); global.gc(); }
    instances().then((counts) => {
      const resources = {};
      for (const type of process.getActiveResourcesInfo()) resources[type] = (resources[type] || 0) + 1;
      const listeners = {};
      for (const name of process.eventNames()) listeners[String(name)] = process.listenerCount(name);
      res.json({ heapUsed: process.memoryUsage().heapUsed, resources: resources, listeners: listeners, instances: counts });
    }, (err) => res.status(500).json({ error: String(err && err.message || err) }));
  };
}
`;

export function writeSettings(userDir: string, options: SettingsOptions): string {
  mkdirSync(userDir, { recursive: true });
  const file = path.join(userDir, 'settings.js');
  writeFileSync(file, settingsSource(options));
  return file;
}

/**
 * Makes the package in `packageDir` a user-installed module of the runtime without copying it: a
 * symlink in <userDir>/node_modules and a dependency in <userDir>/package.json, which is what
 * `npm install <folder>` would leave behind. Node resolves the package's own dependencies from its
 * real path, so a development checkout works as is.
 */
export function linkPackage(userDir: string, packageDir = PACKAGE_ROOT): void {
  const pkg = readPackageJson(packageDir);
  const link = path.join(userDir, 'node_modules', ...pkg.name.split('/'));
  mkdirSync(path.dirname(link), { recursive: true });
  if (existsSync(link) || isDanglingLink(link)) rmSync(link, { recursive: true, force: true });
  symlinkSync(packageDir, link, 'dir');
  const userPackageFile = path.join(userDir, 'package.json');
  const userPackage: { dependencies?: Record<string, string> } & Record<string, unknown> = existsSync(userPackageFile)
    ? (JSON.parse(readFileSync(userPackageFile, 'utf8')) as Record<string, unknown>)
    : { name: 'node-red-user-dir', description: 'A Node-RED user directory', version: '0.0.1', private: true };
  userPackage.dependencies = { ...userPackage.dependencies, [pkg.name]: `file:${packageDir}` };
  writeFileSync(userPackageFile, JSON.stringify(userPackage, null, 2) + '\n');
}

function isDanglingLink(file: string): boolean {
  try {
    return lstatSync(file).isSymbolicLink();
  } catch {
    return false;
  }
}
