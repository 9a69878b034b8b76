/**
 * The Node-RED editor in headless Chromium, driven as a user drives it: menus, dialogs, the canvas
 * and the sidebar. Chromium is the system's (Debian's `chromium`); playwright-core never downloads one.
 */
import { existsSync, mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Locator, type Page } from 'playwright-core';

export const SCREENSHOT_DIR = path.resolve(__dirname, '..', '..', '..', 'test-artifacts', 'screenshots');

/** How long one editor step (a dialog opening, a status arriving) may take on a busy machine. */
const STEP_TIMEOUT = 60_000;

/** Where Chromium is: $CHROMIUM_PATH, else `chromium` or `chromium-browser` on the PATH. */
export function findChromium(): string | undefined {
  const fromEnv = process.env.CHROMIUM_PATH;
  if (fromEnv) return existsSync(fromEnv) ? fromEnv : undefined;
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    for (const name of ['chromium', 'chromium-browser']) {
      const file = path.join(dir, name);
      if (dir && existsSync(file)) return file;
    }
  }
  return undefined;
}

export const CHROMIUM_MISSING =
  'Chromium was not found, and the editor tests need it (they drive the Node-RED editor in a headless browser). ' +
  'Install it with `apt-get install -y chromium` (Debian, as root), or point CHROMIUM_PATH at a Chromium binary. ' +
  'To skip these tests on purpose, set SKIP_BROWSER_TESTS=1.';

export function launchChromium(executablePath: string): Promise<Browser> {
  return chromium.launch({ executablePath, headless: true, timeout: STEP_TIMEOUT });
}

/** How the editor logs an exception from a node's definition (label, oneditprepare, ...) instead of throwing it. */
const DEFINITION_ERROR = /^(Definition error|onedit(prepare|save|cancel|delete|resize)\b)/;

// Runs in the page: what the topmost edit tray shows untranslated. A key missing from the catalog leaves its
// element empty; a key used from code (this._, RED._) shows as the key itself, e.g. `iothub-connection.label.name`.
// Hidden rows, placeholders and tooltips count too.
const TRAY_TRANSLATION_PROBLEMS = `(() => {
  const trays = document.querySelectorAll('.red-ui-tray');
  const tray = trays[trays.length - 1];
  if (!tray) return ['no edit tray is open'];
  const problems = [];
  const texts = [tray.textContent || ''];
  tray.querySelectorAll('[placeholder]').forEach((e) => texts.push(e.getAttribute('placeholder') || ''));
  tray.querySelectorAll('[title]').forEach((e) => texts.push(e.getAttribute('title') || ''));
  for (const text of texts) {
    const raw = /\\biothub-[a-z0-9-]+\\.[a-zA-Z][a-zA-Z.]*/.exec(text);
    if (raw) problems.push('shows the key ' + raw[0]);
  }
  tray.querySelectorAll('[data-i18n]').forEach((e) => {
    for (const spec of (e.getAttribute('data-i18n') || '').split(';')) {
      const m = /^\\[(\\w+)\\](.*)$/.exec(spec);
      const target = m ? m[1] : 'text';
      const key = m ? m[2] : spec;
      const value = target === 'text' || target === 'html' ? e.textContent : e.getAttribute(target);
      if (!value || !value.trim()) problems.push('no text for ' + key);
    }
  });
  return problems;
})()`;

// Runs in the page: the current values of every form field (values typed or set by script are not attributes).
const FIELD_VALUES = `Array.from(document.querySelectorAll('input, textarea, select')).map((e) => e.value).join('\\n')`;

// Runs in the page: 'deployed', or the text of a question the editor asks instead (e.g. about invalid nodes).
const DEPLOY_OUTCOME = `(() => {
  if (!RED.nodes.dirty() && document.querySelector('#red-ui-header-button-deploy').classList.contains('disabled')) return 'deployed';
  const asking = Array.from(document.querySelectorAll('.red-ui-notification')).find((n) => n.offsetParent !== null && n.querySelector('button'));
  return asking ? asking.innerText.replace(/\\s+/g, ' ') : false;
})()`;

export class Editor {
  readonly page: Page;
  /** Uncaught exceptions in the editor page (a broken node .html shows up here). */
  readonly pageErrors: string[] = [];
  /** Console errors, and what the editor logs when a node's definition or dialog code throws. */
  readonly consoleProblems: string[] = [];
  /** Every HTTP response body and websocket frame the page received, to search for secrets. */
  private readonly received: Array<Promise<string>> = [];
  private shots = 0;

  private constructor(
    private readonly context: BrowserContext,
    page: Page,
    private readonly url: string,
    private readonly prefix: string,
  ) {
    this.page = page;
  }

  /** A fresh browser context with the editor loaded and this package's node types registered. */
  static async open(browser: Browser, url: string, prefix: string): Promise<Editor> {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    // Import is a paste into the Import dialog, as a user does it.
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: url });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT);
    const editor = new Editor(context, page, url, prefix);
    page.on('pageerror', (err) => editor.pageErrors.push(err.stack ?? err.message));
    page.on('console', (m) => {
      if (m.type() === 'error' || DEFINITION_ERROR.test(m.text())) editor.consoleProblems.push(m.text());
    });
    page.on('response', (r) =>
      editor.received.push(
        r.body().then(
          (b) => b.toString('utf8'),
          () => '',
        ),
      ),
    );
    page.on('websocket', (ws) => ws.on('framereceived', (f) => editor.received.push(Promise.resolve(String(f.payload)))));
    await page.goto(url);
    // Loaded: this package's types are registered and the deployed flows are on the canvas (an empty flow file gives one tab).
    await page.waitForFunction(
      `typeof RED !== 'undefined' && !!RED.nodes.getType('iothub-device-in') && RED.nodes.version() !== null && RED.workspaces.count() > 0`,
      null,
      { timeout: 120_000 },
    );
    return editor;
  }

  async close(): Promise<void> {
    await this.context.close();
  }

  /** Saves a screenshot under test-artifacts/screenshots, numbered in the order taken. */
  async screenshot(name: string): Promise<string> {
    mkdirSync(SCREENSHOT_DIR, { recursive: true });
    this.shots += 1;
    const file = path.join(SCREENSHOT_DIR, `${this.prefix}-${String(this.shots).padStart(2, '0')}-${name}.png`);
    await this.page.screenshot({ path: file });
    return file;
  }

  /** Menu > Import, paste the flow, Import. */
  async importFlow(json: string): Promise<void> {
    await this.page.click('#red-ui-header-button-sidemenu');
    await this.page.click('#menu-item-import');
    const text = this.page.locator('#red-ui-clipboard-dialog-import-text');
    await text.waitFor();
    await this.page.evaluate(`navigator.clipboard.writeText(${JSON.stringify(json)})`);
    await text.focus();
    await this.page.keyboard.press('Control+V');
    // The button is enabled once the editor has parsed the pasted text; click waits for that.
    await this.page.click('#red-ui-clipboard-dialog-ok');
    await this.page.locator('#red-ui-clipboard-dialog-import-text').waitFor({ state: 'hidden' });
  }

  async showTab(tabId: string): Promise<void> {
    await this.page.click(`#red-ui-tab-${tabId} a`);
    await this.page.locator(`#red-ui-tab-${tabId}.active`).waitFor();
  }

  /** Waits until no notification is on screen (they cover the top of the edit trays). */
  async notificationsGone(): Promise<void> {
    await this.page.locator('.red-ui-notification:visible').first().waitFor({ state: 'detached' });
  }

  node(id: string): Locator {
    return this.page.locator(`g.red-ui-flow-node-group[id="${id}"]`);
  }

  /** Double-clicks a node on the canvas; resolves when its edit tray has stopped moving. */
  async openNode(id: string): Promise<void> {
    await this.node(id).locator('.red-ui-flow-node').dblclick();
    await this.page.locator('#node-dialog-ok').click({ trial: true });
  }

  /** The pencil beside a config-node select in the open node dialog. */
  async openConfigOf(property: string): Promise<void> {
    await this.page.click(`#node-input-btn-${property}-edit`);
    await this.page.locator('#node-config-dialog-ok').click({ trial: true });
  }

  /** Done (or Update) of the topmost tray; resolves when the tray is gone. */
  async done(): Promise<void> {
    const config = this.page.locator('#node-config-dialog-ok');
    const button = (await config.count()) > 0 ? config : this.page.locator('#node-dialog-ok');
    await button.click();
    await button.waitFor({ state: 'detached' });
  }

  /** Labels, options, placeholders and tooltips of the topmost edit tray that are not translated. */
  async untranslated(): Promise<string[]> {
    return (await this.page.evaluate(TRAY_TRANSLATION_PROBLEMS)) as string[];
  }

  async fieldValues(): Promise<string> {
    return String(await this.page.evaluate(FIELD_VALUES));
  }

  /** Deploy; resolves when the editor holds no undeployed change, fails if the editor asks anything first. */
  async deploy(): Promise<void> {
    await this.page.locator('#red-ui-header-button-deploy:not(.disabled)').waitFor();
    await this.page.click('#red-ui-header-button-deploy');
    const outcome = await this.page.waitForFunction(DEPLOY_OUTCOME);
    const text = String(await outcome.jsonValue());
    if (text !== 'deployed') throw new Error(`the editor did not deploy; it said: ${text}`);
  }

  /** Waits for the status a node shows on the canvas: its dot colour and its (translated) text. */
  async waitForCanvasStatus(id: string, fill: string, text: string, timeout = STEP_TIMEOUT): Promise<void> {
    await this.node(id).locator(`.red-ui-flow-node-status-dot-${fill}`).waitFor({ timeout });
    await this.node(id)
      .locator('.red-ui-flow-node-status-label')
      .filter({ hasText: new RegExp(`^${text}$`) })
      .waitFor({ timeout });
  }

  async showDebugSidebar(): Promise<void> {
    await this.page.click('#red-ui-tab-debug-link-button');
    await this.page.locator('#red-ui-tab-debug.active').waitFor();
  }

  /** The messages a debug node (by name) shows in the debug sidebar. */
  debugMessages(debugNodeName: string): Locator {
    return this.page
      .locator('.red-ui-debug-msg')
      .filter({ has: this.page.locator('.red-ui-debug-msg-name', { hasText: new RegExp(`^node: ${debugNodeName}$`) }) });
  }

  /** Everything the page has received over HTTP and the editor's websocket so far. */
  async receivedText(): Promise<string> {
    return (await Promise.all(this.received)).join('\n');
  }
}
