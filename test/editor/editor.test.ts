/**
 * The editor as a user meets it: headless Chromium against a real Node-RED 4.x with this package
 * installed. The end-to-end example is pasted into the Import dialog, every IoT Hub node's dialog is
 * opened and changed, the flow is deployed, and the canvas and the debug sidebar must show it working.
 * A stored connection string must never reach the browser or the exported flow.
 * Screenshots of each step land in test-artifacts/screenshots.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import type { Browser } from 'playwright-core';
import type { SimulatedHub } from '../../src/simulator';
import { CHROMIUM_MISSING, Editor, findChromium, launchChromium, SCREENSHOT_DIR } from '../helpers/editor';
import { startTestHub, testCertDir } from '../helpers/hub';
import { freePort, NodeRedRuntime, type FlowNode } from '../helpers/node-red-runtime';
import { assertCleanLog, azureConnection, isConnected, reportRuntimeOnFailure } from '../runtime/support';

const EXAMPLE = path.resolve(__dirname, '..', '..', '..', 'examples', 'end-to-end.json');
const CONFIG_ID = 'iothub-local-simulator';
/** The five palette nodes of the example and the name each gets in its dialog. */
const NODES: Array<{ id: string; type: string; name: string }> = [
  { id: 'e2e-device-out', type: 'iothub-device-out', name: 'sensor to hub' },
  { id: 'e2e-telemetry', type: 'iothub-telemetry-in', name: 'read telemetry' },
  { id: 'e2e-c2d', type: 'iothub-c2d-send', name: 'command to sensor' },
  { id: 'e2e-device-in', type: 'iothub-device-in', name: 'sensor inbox' },
  { id: 'e2e-feedback', type: 'iothub-feedback-in', name: 'delivery reports' },
];

async function assertTranslated(ui: Editor, where: string): Promise<void> {
  assert.deepEqual(await ui.untranslated(), [], `untranslated text in ${where}`);
}

describe('the editor in headless Chromium against a real Node-RED 4.x', function () {
  this.timeout(300_000);
  let browser: Browser | undefined;
  let runtime: NodeRedRuntime | undefined;
  let editor: Editor | undefined;
  let hub: SimulatedHub | undefined;

  before(async function () {
    if (process.env.SKIP_BROWSER_TESTS === '1') {
      // In CI the editor tests always run, so a stray skip cannot hide a broken editor.
      if (process.env.CI) throw new Error('SKIP_BROWSER_TESTS=1 is set, but in CI the editor tests must run');
      this.skip();
    }
    const executable = findChromium();
    if (!executable) throw new Error(CHROMIUM_MISSING);
    rmSync(SCREENSHOT_DIR, { recursive: true, force: true });
    runtime = await NodeRedRuntime.create({ probe: false, logLevel: 'info' });
    await runtime.start();
    browser = await launchChromium(executable);
  });

  afterEach(async function () {
    reportRuntimeOnFailure(this.currentTest, runtime);
    if (editor && this.currentTest?.state === 'failed') {
      const shot = await editor.screenshot('failed').catch(() => 'none');
      process.stdout.write(
        `screenshot of the failure: ${shot}\npage errors: ${JSON.stringify(editor.pageErrors)}\nconsole: ${JSON.stringify(editor.consoleProblems)}\n`,
      );
    }
    await editor?.close().catch(() => undefined);
    editor = undefined;
  });

  after(async () => {
    // Each step runs even if one before it fails, so neither Chromium nor Node-RED outlives the suite.
    await browser?.close().catch(() => undefined);
    await runtime?.dispose().catch(() => undefined);
    await hub?.close().catch(() => undefined);
  });

  it('imports the end-to-end example, edits every IoT Hub node, deploys, and shows it connected with a round trip in the debug sidebar', async () => {
    const nodeRed = runtime as NodeRedRuntime;
    const port = await freePort();
    const ui = await Editor.open(browser as Browser, nodeRed.url, 'end-to-end');
    editor = ui;

    await ui.importFlow(readFileSync(EXAMPLE, 'utf8'));
    await ui.showTab('e2e-flow');
    for (const n of NODES) await ui.node(n.id).waitFor();
    await ui.screenshot('imported');
    await ui.notificationsGone();

    // The config node, through the pencil of the first node that uses it: the simulator moves to a free port.
    await ui.openNode('e2e-device-out');
    await ui.openConfigOf('hub');
    await ui.page.click('#node-config-iothub-advanced-toggle');
    await ui.page.locator('#node-config-input-tokenLifetime').waitFor();
    assert.equal(await ui.page.inputValue('#node-config-input-mode'), 'local');
    await assertTranslated(ui, 'the iothub-connection dialog');
    await ui.screenshot('dialog-iothub-connection');
    await ui.page.fill('#node-config-input-localPort', String(port));
    await ui.page.fill('#node-config-input-name', `simulator on ${port}`);
    await ui.done();

    for (const n of NODES) {
      if (n.id !== 'e2e-device-out') await ui.openNode(n.id);
      assert.equal(await ui.page.inputValue('#node-input-hub'), CONFIG_ID, `${n.type} uses the example's connection`);
      await assertTranslated(ui, `the ${n.type} dialog`);
      await ui.screenshot(`dialog-${n.type}`);
      await ui.page.fill('#node-input-name', n.name);
      await ui.done();
      await ui.node(n.id).filter({ hasText: n.name }).waitFor();
    }

    await ui.deploy();
    for (const n of NODES) await ui.waitForCanvasStatus(n.id, 'green', 'connected');
    await ui.screenshot('deployed');

    // What the dialogs changed is what the runtime now runs.
    const deployed = new Map((await nodeRed.flows()).flows.map((n) => [n.id, n]));
    assert.equal(String(deployed.get(CONFIG_ID)?.localPort), String(port));
    assert.equal(deployed.get(CONFIG_ID)?.name, `simulator on ${port}`);
    for (const n of NODES) assert.equal(deployed.get(n.id)?.name, n.name, `${n.type} keeps the name typed in its dialog`);

    // device-out -> hub -> telemetry-in, and c2d-send -> device-in -> feedback-in, as the debug sidebar shows them.
    await ui.showDebugSidebar();
    await ui.debugMessages('telemetry').filter({ hasText: 'temperature' }).first().waitFor();
    await ui.debugMessages('command at the device').filter({ hasText: 'blink' }).first().waitFor();
    await ui.debugMessages('delivery feedback').filter({ hasText: 'Success' }).first().waitFor();
    await ui.screenshot('debug-sidebar');
    assert.equal(await ui.debugMessages('errors').count(), 0, `errors in the debug sidebar: ${await ui.debugMessages('errors').allInnerTexts()}`);

    assert.deepEqual(ui.pageErrors, [], 'uncaught errors in the editor page');
    assert.deepEqual(ui.consoleProblems, [], 'errors the editor logged (a node definition or dialog that threw)');
    assertCleanLog(nodeRed.log);
  });

  it('methods and twins: the two examples import, every new dialog and help is translated and fits, and the call on deploy is answered', async () => {
    const nodeRed = runtime as NodeRedRuntime;
    const port = await freePort();
    const ui = await Editor.open(browser as Browser, nodeRed.url, 'methods-twins');
    editor = ui;
    const read = (file: string): FlowNode[] =>
      (JSON.parse(readFileSync(path.resolve(__dirname, '..', '..', '..', 'examples', file), 'utf8')) as FlowNode[]).map((n) =>
        n.type === 'iothub-connection' ? { ...n, id: 'mt-hub', localPort: port } : typeof n.hub === 'string' ? { ...n, hub: 'mt-hub' } : n,
      );
    const methods = read('direct-methods.json');
    // One import, one connection node: the twin example's own copy of it is left out.
    const twin = read('device-twin.json').filter((n) => n.type !== 'iothub-connection');
    await ui.importFlow(JSON.stringify([...methods, ...twin]));
    const dialogs: Array<{ id: string; type: string; tab: string }> = [
      { id: 'meth-in', type: 'iothub-method-in', tab: 'm3th0d5e8a1c0001' },
      { id: 'meth-response', type: 'iothub-method-response', tab: 'm3th0d5e8a1c0001' },
      { id: 'meth-invoke', type: 'iothub-method-invoke', tab: 'm3th0d5e8a1c0001' },
      { id: 'twin-device', type: 'iothub-twin', tab: 'tw1nde5e8a1c0001' },
      { id: 'twin-desired', type: 'iothub-twin-desired', tab: 'tw1nde5e8a1c0001' },
    ];
    for (const d of dialogs) {
      await ui.showTab(d.tab);
      await ui.node(d.id).waitFor();
      await ui.openNode(d.id);
      assert.equal(await ui.page.inputValue('#node-input-hub'), 'mt-hub', `${d.type} uses the connection`);
      await assertTranslated(ui, `the ${d.type} dialog`);
      await ui.screenshot(`dialog-${d.type}`);
      await ui.done();
      await ui.page.evaluate(`RED.sidebar.help.show(${JSON.stringify(d.type)}, true)`);
      await ui.page.locator('.red-ui-help dl.message-properties > dt').first().waitFor();
      const clipped = (await ui.page.evaluate(
        `[...document.querySelectorAll('.red-ui-help dl.message-properties > dt')].filter((dt) => dt.getClientRects().length && dt.scrollWidth > dt.clientWidth + 1).map((dt) => dt.textContent)`,
      )) as string[];
      assert.deepEqual(clipped, [], `${d.type}: help rows cut off in the sidebar`);
    }
    const labels = (await ui.page.evaluate(
      `Object.fromEntries(${JSON.stringify(dialogs.map((d) => d.type))}.map((t) => { const el = document.querySelector('.red-ui-palette-node[data-palette-type="' + t + '"]'); return [t, el ? el.querySelector('.red-ui-palette-label').textContent.replace(/\\s+/g, ' ').trim() : null]; }))`,
    )) as Record<string, string | null>;
    assert.deepEqual(labels, {
      'iothub-method-in': 'method in',
      'iothub-method-response': 'method response',
      'iothub-method-invoke': 'method invoke',
      'iothub-twin': 'twin',
      'iothub-twin-desired': 'twin desired',
    });

    await ui.deploy();
    await ui.showTab('m3th0d5e8a1c0001');
    await ui.showDebugSidebar();
    await ui.debugMessages('answer').first().waitFor();
    await ui.screenshot('methods-answered');
    assert.equal(await ui.debugMessages('errors').count(), 0, `errors in the debug sidebar: ${await ui.debugMessages('errors').allInnerTexts()}`);
    assert.deepEqual(ui.pageErrors, [], 'uncaught errors in the editor page');
    assert.deepEqual(ui.consoleProblems, [], 'errors the editor logged (a node definition or dialog that threw)');
  });

  it('never shows a stored connection string: not in the config dialog, the page or the exported flow', async () => {
    const nodeRed = runtime as NodeRedRuntime;
    hub = await startTestHub();
    // A key made for this run, so finding it anywhere can only mean this credential leaked.
    const key = randomBytes(32).toString('base64');
    hub.registry.setPolicy('editor-test', ['ServiceConnect'], key);
    const connectionString = hub.serviceConnectionString('editor-test');
    const flow: FlowNode[] = [
      { id: 'azure-tab', type: 'tab', label: 'Azure IoT Hub' },
      { ...azureConnection(hub, 'azure-hub'), name: 'azure hub', role: 'service', credentials: { connectionString } },
      { id: 'azure-feedback', type: 'iothub-feedback-in', z: 'azure-tab', name: '', hub: 'azure-hub', batch: false, x: 200, y: 100, wires: [[]] },
    ];
    nodeRed.statuses.clear();
    await nodeRed.deploy(flow);
    await nodeRed.waitForStatus('azure-feedback', isConnected, 'connected with the stored connection string');

    const ui = await Editor.open(browser as Browser, nodeRed.url, 'credentials');
    editor = ui;
    await ui.showTab('azure-tab');
    await ui.waitForCanvasStatus('azure-feedback', 'green', 'connected');
    await ui.openNode('azure-feedback');
    await ui.openConfigOf('hub');
    assert.equal(await ui.page.inputValue('#node-config-input-mode'), 'azure');
    await ui.page.locator('#node-config-input-connectionString').waitFor();
    const shown = await ui.page.inputValue('#node-config-input-connectionString');
    assert.ok(shown === '' || shown === '__PWRD__', `the connection string field holds ${shown.length} characters, not the placeholder`);
    assert.equal(await ui.page.getAttribute('#node-config-input-connectionString', 'type'), 'password');
    assert.ok((await ui.page.textContent('#node-config-iothub-role'))?.trim(), 'the dialog shows the role');
    await assertTranslated(ui, 'the iothub-connection dialog in Azure mode');
    await ui.screenshot('dialog-azure-connection');

    // The placeholder shows the shape of a connection string (`SharedAccessKey=...`), so the page is searched for this one.
    const secrets = [key, connectionString];
    const html = await ui.page.content();
    const fields = await ui.fieldValues();
    const received = await ui.receivedText();
    for (const secret of secrets) {
      assert.ok(!html.includes(secret), `the page's HTML contains ${secret === key ? 'the key' : secret}`);
      assert.ok(!fields.includes(secret), `a form field holds ${secret === key ? 'the key' : secret}`);
      assert.ok(!received.includes(secret), `the browser received ${secret === key ? 'the key' : secret}`);
    }

    // Saving the dialog unchanged keeps the stored string: after the deploy the node connects again.
    await ui.page.fill('#node-config-input-name', 'azure hub (renamed)');
    await ui.done();
    await ui.done();
    nodeRed.statuses.clear();
    await ui.deploy();
    await nodeRed.waitForStatus('azure-feedback', isConnected, 'connected again after the editor deployed the config node');
    await ui.waitForCanvasStatus('azure-feedback', 'green', 'connected');
    await ui.screenshot('azure-redeployed');

    const exported = await nodeRed.flows();
    const exportedText = JSON.stringify(exported);
    for (const secret of [...secrets, 'SharedAccessKey='])
      assert.ok(!exportedText.includes(secret), `GET /flows contains ${secret === key ? 'the key' : secret}`);
    const config = exported.flows.find((n) => n.id === 'azure-hub');
    assert.equal(config?.name, 'azure hub (renamed)');
    assert.equal(config?.credentials, undefined, 'the exported config node carries credentials');
    const credentialsFile = readFileSync(path.join(nodeRed.userDir, 'flows_cred.json'), 'utf8');
    assert.ok(!credentialsFile.includes(key), 'flows_cred.json holds the key in clear text');
    assert.ok(!(await ui.receivedText()).includes(key), 'the browser received the key');

    assert.deepEqual(ui.pageErrors, [], 'uncaught errors in the editor page');
    assert.deepEqual(ui.consoleProblems, [], 'errors the editor logged (a node definition or dialog that threw)');
    assertCleanLog(nodeRed.log);
  });

  it("speaks an integrator's words: palette labels and icons, a flagged connection string, the ${VAR} line, the show toggle, the store select, typed device", async () => {
    const nodeRed = runtime as NodeRedRuntime;
    const port = await freePort();
    const flow: FlowNode[] = [
      { id: 'ux-tab', type: 'tab', label: 'integrator' },
      { id: 'ux-hub', type: 'iothub-connection', name: 'ux hub', mode: 'local', localPort: port },
      {
        id: 'ux-tel',
        type: 'iothub-telemetry-in',
        z: 'ux-tab',
        name: 'ux telemetry',
        hub: 'ux-hub',
        consumerGroup: '$Default',
        partitions: '',
        startPosition: 'latest',
        startValue: '',
        checkpointStore: 'file',
        output: 'auto',
        prefetch: 300,
        ownerLevel: '',
        x: 200,
        y: 100,
        wires: [[]],
      },
      // A device-in from before its Device field had a type: no deviceIdType at all.
      {
        id: 'ux-din',
        type: 'iothub-device-in',
        z: 'ux-tab',
        name: 'ux device',
        hub: 'ux-hub',
        deviceId: 'old-device',
        settle: 'auto',
        output: 'auto',
        prefetch: 10,
        x: 200,
        y: 200,
        wires: [[]],
      },
    ];
    await nodeRed.deploy(flow);
    const ui = await Editor.open(browser as Browser, nodeRed.url, 'integrator');
    editor = ui;
    await ui.showTab('ux-tab');

    // Palette labels as the core nodes have them (Node-RED splits a label at hyphens: "c2d - send").
    const labels = (await ui.page.evaluate(`(() => {
      const out = {};
      for (const type of ['iothub-c2d-send', 'iothub-feedback-in', 'iothub-telemetry-in', 'iothub-device-out', 'iothub-device-in']) {
        const el = document.querySelector('.red-ui-palette-node[data-palette-type="' + type + '"]');
        const icon = el && el.querySelector('.red-ui-palette-icon');
        out[type] = { label: el ? el.querySelector('.red-ui-palette-label').textContent.replace(/\\s+/g, ' ').trim() : null, icon: icon ? getComputedStyle(icon).backgroundImage : null };
      }
      return out;
    })()`)) as Record<string, { label: string | null; icon: string | null }>;
    assert.deepEqual(Object.fromEntries(Object.entries(labels).map(([type, v]) => [type, v.label])), {
      'iothub-c2d-send': 'c2d send',
      'iothub-feedback-in': 'feedback in',
      'iothub-telemetry-in': 'telemetry in',
      'iothub-device-out': 'device out',
      'iothub-device-in': 'device in',
    });
    const icon = (type: string): string => String(labels[type]?.icon);
    for (const type of Object.keys(labels)) assert.match(icon(type), /\.svg/, `${type} has its icon`);
    assert.notEqual(icon('iothub-c2d-send'), icon('iothub-feedback-in'), 'c2d send and feedback in have different icons');
    assert.notEqual(icon('iothub-device-out'), icon('iothub-device-in'), 'device out and device in have different icons');
    await ui.screenshot('palette');

    // Every help text in the sidebar at its usual width: no property row cut off (a <dt> there does not wrap).
    for (const type of ['iothub-connection', ...Object.keys(labels)]) {
      await ui.page.evaluate(`RED.sidebar.help.show(${JSON.stringify(type)}, true)`);
      const rows = ui.page.locator('.red-ui-help dl.message-properties > dt');
      await rows.first().waitFor();
      const clipped = (await ui.page.evaluate(
        `[...document.querySelectorAll('.red-ui-help dl.message-properties > dt')].filter((dt) => dt.getClientRects().length && dt.scrollWidth > dt.clientWidth + 1).map((dt) => dt.textContent)`,
      )) as string[];
      assert.deepEqual(clipped, [], `${type}: help rows cut off in the sidebar`);
      if (type === 'iothub-telemetry-in') await ui.screenshot('help-telemetry-in');
    }

    // telemetry-in: the checkpoint store is a select of the context stores this Node-RED has, none first, then the default.
    await ui.openNode('ux-tel');
    const select = (await ui.page.evaluate(`(() => ({
      tag: document.getElementById('node-input-checkpointStore').tagName,
      options: [...document.querySelectorAll('#node-input-checkpointStore option')].map((o) => o.value),
      value: document.getElementById('node-input-checkpointStore').value,
      context: RED.settings.context,
    }))()`)) as { tag: string; options: string[]; value: string; context: { default: string; stores: string[] } };
    assert.equal(select.tag, 'SELECT');
    assert.equal(select.value, 'file', 'the stored choice is selected');
    const stores = [select.context.default, ...select.context.stores.filter((s) => s !== select.context.default)];
    assert.deepEqual(select.options, ['', ...stores]);
    assert.ok(stores.length >= 2, `stores: ${stores.join(', ')}`);
    await assertTranslated(ui, 'the telemetry-in dialog');
    await ui.screenshot('dialog-telemetry-in-stores');
    // Checkpoints in Azure Blob Storage: the storage string (a password field), the container and the balancing
    // rows show, the context store's hide; back to the context store, the other way round.
    const visible = async (selector: string): Promise<boolean> => ui.page.locator(selector).isVisible();
    assert.equal(await visible('#node-input-storageConnectionString'), false);
    await ui.page.selectOption('#node-input-checkpointKind', 'blob');
    assert.equal(await visible('#node-input-storageConnectionString'), true);
    assert.equal(await visible('#node-input-container'), true);
    assert.equal(await visible('#node-input-ownershipExpiry'), true);
    assert.equal(await visible('#node-input-checkpointStore'), false);
    assert.equal(await ui.page.getAttribute('#node-input-storageConnectionString', 'type'), 'password');
    // A node saved before the field existed shows the container a blank one means.
    const container = await ui.page.inputValue('#node-input-container');
    if (container === '') assert.equal(await ui.page.getAttribute('#node-input-container', 'placeholder'), 'telemetry-checkpoints');
    else assert.equal(container, 'telemetry-checkpoints');
    await assertTranslated(ui, 'the telemetry-in dialog with Blob checkpoints');
    await ui.screenshot('dialog-telemetry-in-blob');
    await ui.page.selectOption('#node-input-checkpointKind', 'context');
    assert.equal(await visible('#node-input-checkpointStore'), true);
    assert.equal(await visible('#node-input-container'), false);

    // The connection string: flagged when empty or garbage, ${VAR} said to be read at deploy, a show/hide toggle.
    await ui.openConfigOf('hub');
    await ui.page.selectOption('#node-config-input-mode', 'azure');
    const field = '#node-config-input-connectionString';
    const role = async (): Promise<string> => String(await ui.page.textContent('#node-config-iothub-role')).trim();
    assert.equal(await ui.page.getAttribute(field, 'type'), 'password');
    await ui.page.fill(field, 'HostName=typed.example;SharedAccessKeyName=p;SharedAccessKey=c2hvd24=');
    await ui.page.click('#node-config-iothub-show');
    assert.equal(await ui.page.getAttribute(field, 'type'), 'text', 'the eye shows what was typed');
    await ui.screenshot('connection-string-shown');
    await ui.page.click('#node-config-iothub-show');
    assert.equal(await ui.page.getAttribute(field, 'type'), 'password', 'and hides it again');
    await ui.page.fill(field, '${IOTHUB_CS}');
    assert.match(await role(), /environment variable at deploy/);
    await ui.screenshot('connection-string-env');
    await ui.page.fill(field, 'not a connection string');
    assert.equal(await role(), 'not a connection string this node understands');
    await assertTranslated(ui, 'the iothub-connection dialog in Azure mode');
    await ui.done();
    await ui.done();
    const valid = (id: string): Promise<unknown> => ui.page.evaluate(`RED.nodes.node(${JSON.stringify(id)}).valid`);
    assert.equal(await valid('ux-hub'), false, 'garbage: the config node is invalid');
    await ui.node('ux-tel').locator('.red-ui-flow-node-error').waitFor();
    await ui.screenshot('bad-connection-string-flagged');

    const setString = async (text: string): Promise<void> => {
      await ui.openNode('ux-tel');
      await ui.openConfigOf('hub');
      await ui.page.fill(field, text);
      await ui.done();
      await ui.done();
    };
    await setString('');
    assert.equal(await valid('ux-hub'), false, 'empty: the config node is invalid');
    await setString('${IOTHUB_CS}');
    assert.equal(await valid('ux-hub'), true, 'a ${VAR} reference cannot be checked in the editor');
    assert.equal(await valid('ux-tel'), true);
    await ui.node('ux-tel').locator('.red-ui-flow-node-error').waitFor({ state: 'hidden' });
    await setString('"HostName=hub.azure-devices.net;SharedAccessKeyName=service;SharedAccessKey=c2VjcmV0"');
    assert.equal(await valid('ux-hub'), true, 'a string in quotes (as az prints it) is recognised');

    // device-in's Device: a typed input (str/msg/env); a flow without the type reads as str.
    await ui.openNode('ux-din');
    const typed = async (): Promise<[string, string]> =>
      (await ui.page.evaluate(`[$('#node-input-deviceId').typedInput('type'), $('#node-input-deviceId').typedInput('value')]`)) as [string, string];
    assert.deepEqual(await typed(), ['str', 'old-device']);
    await ui.page.evaluate(`$('#node-input-deviceId').typedInput('type', 'env'); $('#node-input-deviceId').typedInput('value', 'PUMP_DEVICE')`);
    await assertTranslated(ui, 'the device-in dialog');
    await ui.screenshot('dialog-device-in-typed');
    await ui.done();
    assert.deepEqual(await ui.page.evaluate(`[RED.nodes.node('ux-din').deviceIdType, RED.nodes.node('ux-din').deviceId]`), ['env', 'PUMP_DEVICE']);

    assert.deepEqual(ui.pageErrors, [], 'uncaught errors in the editor page');
    assert.deepEqual(ui.consoleProblems, [], 'errors the editor logged (a node definition or dialog that threw)');
  });

  it("tests a connection from its dialog, names the failure, and picks a device from the hub's list", async () => {
    const nodeRed = runtime as NodeRedRuntime;
    const port = await freePort();
    const checkHub = await startTestHub();
    try {
      const flow: FlowNode[] = [
        { id: 'pick-tab', type: 'tab', label: 'picker' },
        { id: 'pick-hub', type: 'iothub-connection', name: 'pick hub', mode: 'local', localPort: port },
        // A device that sends once, so the local simulator has it in its registry.
        {
          id: 'pick-press',
          type: 'iothub-device-out',
          z: 'pick-tab',
          hub: 'pick-hub',
          deviceId: 'line-3-press',
          deviceIdType: 'str',
          x: 400,
          y: 100,
          wires: [[]],
        },
        {
          id: 'pick-inject',
          type: 'inject',
          z: 'pick-tab',
          props: [{ p: 'payload' }],
          payload: '1',
          payloadType: 'num',
          once: true,
          onceDelay: 0.1,
          repeat: '',
          topic: '',
          x: 150,
          y: 100,
          wires: [['pick-press']],
        },
        { id: 'pick-c2d', type: 'iothub-c2d-send', z: 'pick-tab', hub: 'pick-hub', deviceId: '', deviceIdType: 'msg', x: 400, y: 200, wires: [[]] },
        // A field that lists devices (a gateway's twins): the picker adds to the list. Written without action and
        // subscribe, as a hand-made flow file may be: the dialog shows what the runtime does then.
        {
          id: 'pick-twin',
          type: 'iothub-twin',
          z: 'pick-tab',
          hub: 'pick-hub',
          deviceId: 'line-2',
          deviceIdType: 'str',
          x: 400,
          y: 300,
          wires: [[]],
        },
      ];
      await nodeRed.deploy(flow);
      const ui = await Editor.open(browser as Browser, nodeRed.url, 'picker');
      editor = ui;
      await ui.showTab('pick-tab');
      await ui.openNode('pick-c2d');
      // Written without ack or transport, as a hand-made flow file may be: the dialogs show the runtime's defaults.
      assert.equal(await ui.page.evaluate(`$('#node-input-ack').val()`), 'none');

      // Test connection in local mode: the simulator this Node-RED started on the port, authenticated.
      await ui.openConfigOf('hub');
      assert.equal(await ui.page.evaluate(`$('#node-config-input-transport').val()`), 'amqps');
      await ui.page.click('#node-config-iothub-check');
      const result = ui.page.locator('#node-config-iothub-check-result');
      await ui.page.locator('#node-config-iothub-check-result.iothub-check-ok').waitFor();
      assert.match(
        String(await result.textContent()),
        new RegExp(`^Local simulator on port ${port} \\(running inside this Node-RED\\): connected and authenticated`),
      );
      await assertTranslated(ui, 'the connection dialog after a test');
      await ui.screenshot('connection-test-local');

      // Azure mode, typed and not deployed: a wrong key is named as the hub names it.
      await ui.page.selectOption('#node-config-input-mode', 'azure');
      const wrongKey = checkHub.serviceConnectionString().replace(/SharedAccessKey=[^;]+/, `SharedAccessKey=${Buffer.alloc(32, 3).toString('base64')}`);
      await ui.page.fill('#node-config-input-connectionString', wrongKey);
      await ui.page.evaluate(`$('#node-config-input-caFile').val(${JSON.stringify(path.join(testCertDir(), 'cert.pem'))})`);
      await ui.page.click('#node-config-iothub-check');
      await ui.page.locator('#node-config-iothub-check-result.iothub-check-failed').waitFor();
      assert.match(String(await result.textContent()), /^Failed: Unauthorized: /);
      await ui.screenshot('connection-test-wrong-key');
      // And the right one: connected as the policy, on the hub's host.
      await ui.page.fill('#node-config-input-connectionString', checkHub.serviceConnectionString());
      await ui.page.click('#node-config-iothub-check');
      await ui.page.locator('#node-config-iothub-check-result.iothub-check-ok').waitFor();
      assert.match(
        String(await result.textContent()),
        new RegExp(`^Connected and authenticated as gateway policy iothubowner on ${checkHub.hostWithPort.replace(/[.]/g, '\\.')} `),
      );
      await ui.screenshot('connection-test-azure');
      await ui.page.click('#node-config-dialog-cancel');
      await ui.page.locator('#node-config-dialog-cancel').waitFor({ state: 'detached' });

      // The device picker beside c2d send's Device field lists the local simulator's devices; a choice fills the field.
      await ui.page.click('.iothub-device-pick');
      const option = ui.page.locator('.iothub-device-list option[value="line-3-press"]');
      await option.waitFor({ state: 'attached' });
      await ui.screenshot('device-picker');
      await ui.page.selectOption('.iothub-device-list', 'line-3-press');
      const typed = (await ui.page.evaluate(`[$('#node-input-deviceId').typedInput('type'), $('#node-input-deviceId').typedInput('value')]`)) as [
        string,
        string,
      ];
      assert.deepEqual(typed, ['str', 'line-3-press']);
      await assertTranslated(ui, 'the c2d send dialog with the picker');
      await ui.done();
      assert.deepEqual(await ui.page.evaluate(`[RED.nodes.node('pick-c2d').deviceIdType, RED.nodes.node('pick-c2d').deviceId]`), ['str', 'line-3-press']);

      await ui.openNode('pick-twin');
      assert.deepEqual(await ui.page.evaluate(`[$('#node-input-action').val(), $('#node-input-subscribe').prop('checked')]`), ['report', true]);
      await ui.page.click('.iothub-device-pick');
      await ui.page.locator('.iothub-device-list option[value="line-3-press"]').waitFor({ state: 'attached' });
      await ui.page.selectOption('.iothub-device-list', 'line-3-press');
      assert.equal(await ui.page.evaluate(`$('#node-input-deviceId').typedInput('value')`), 'line-2, line-3-press');
      await ui.screenshot('device-picker-list');
      await ui.done();
      assert.deepEqual(
        await ui.page.evaluate(`[RED.nodes.node('pick-twin').deviceId, RED.nodes.node('pick-twin').action, RED.nodes.node('pick-twin').subscribe]`),
        ['line-2, line-3-press', 'report', true],
      );
      assert.deepEqual(ui.pageErrors, [], 'uncaught errors in the editor page');
      assert.deepEqual(ui.consoleProblems, [], 'errors the editor logged');
    } finally {
      await checkHub.close();
    }
  });

  it('statuses are words from the catalog, in the canvas: a refused link and a host that does not resolve name their cause', async () => {
    // Last in the suite: the warnings these broken connections log belong in no other test's clean log.
    const nodeRed = runtime as NodeRedRuntime;
    const statusHub = await startTestHub();
    try {
      const key = Buffer.alloc(32, 5).toString('base64');
      const flow: FlowNode[] = [
        { id: 'status-tab', type: 'tab', label: 'Statuses' },
        // The `device` policy has DeviceConnect only: the connection opens and the hub refuses feedback-in's link.
        { ...azureConnection(statusHub, 'refused-hub'), credentials: { connectionString: statusHub.serviceConnectionString('device') } },
        {
          ...azureConnection(statusHub, 'nowhere-hub'),
          credentials: { connectionString: `HostName=no-such-hub.invalid;SharedAccessKeyName=p;SharedAccessKey=${key}` },
        },
        { id: 'refused-feedback', type: 'iothub-feedback-in', z: 'status-tab', name: '', hub: 'refused-hub', batch: false, x: 200, y: 100, wires: [[]] },
        { id: 'nowhere-telemetry', type: 'iothub-telemetry-in', z: 'status-tab', name: '', hub: 'nowhere-hub', x: 200, y: 200, wires: [[]] },
      ];
      nodeRed.statuses.clear();
      await nodeRed.deploy(flow);
      const ui = await Editor.open(browser as Browser, nodeRed.url, 'statuses');
      editor = ui;
      await ui.showTab('status-tab');
      const label = (id: string, text: string): Promise<void> =>
        ui
          .node(id)
          .locator('.red-ui-flow-node-status-label')
          .filter({ hasText: new RegExp(`^${text}$`) })
          .waitFor({ timeout: 30_000 });
      await label('refused-feedback', 'not authorized');
      await label('nowhere-telemetry', 'host name not found');
      await ui.screenshot('statuses');
      assert.deepEqual(ui.pageErrors, [], 'uncaught errors in the editor page');
    } finally {
      await statusHub.close();
    }
  });
});
