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
import { startTestHub } from '../helpers/hub';
import { freePort, NodeRedRuntime, type FlowNode } from '../helpers/node-red-runtime';
import { assertCleanLog, azureConnection, isConnected, reportRuntimeOnFailure } from '../runtime/support';

const EXAMPLE = path.resolve(__dirname, '..', '..', '..', 'examples', 'end-to-end.json');
const CONFIG_ID = 'e2e-hub';
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
