/** The node adapter's close handling: `done` once, after the release, whatever the release does. */
import { strict as assert } from 'node:assert';
import { EventEmitter } from 'node:events';
import type { Node } from 'node-red';
import { closeWith } from '../../src/nodes/adapter';

/** Closes like Node-RED does: the close listener gets (removed, done); resolves with the number of done calls after a few turns. */
async function close(release: () => unknown): Promise<{ calls: number; order: string[] }> {
  const node = new EventEmitter();
  const order: string[] = [];
  closeWith(node as unknown as Node, () => {
    order.push('release');
    return release();
  });
  let calls = 0;
  const listener = node.listeners('close')[0] as (removed: boolean, done: () => void) => void;
  assert.equal(listener.length, 2, 'declares (removed, done), or Node-RED would not wait for done');
  listener(false, () => {
    calls += 1;
    order.push('done');
  });
  await new Promise((r) => setTimeout(r, 20));
  return { calls, order };
}

describe('adapter: closeWith', () => {
  it('calls done once after a release that resolves, returns nothing, rejects or throws', async () => {
    let finished = false;
    const slow = await close(() => new Promise<void>((r) => setTimeout(() => ((finished = true), r()), 5)));
    assert.deepEqual(slow, { calls: 1, order: ['release', 'done'] });
    assert.ok(finished, 'done came after the release finished');
    assert.deepEqual(await close(() => undefined), { calls: 1, order: ['release', 'done'] });
    assert.deepEqual(await close(() => Promise.reject(new Error('detach failed'))), { calls: 1, order: ['release', 'done'] });
    assert.deepEqual(
      await close(() => {
        throw new Error('already closed');
      }),
      { calls: 1, order: ['release', 'done'] },
    );
  });
});
