/**
 * The fault matrix while traffic flows in both directions: every fault the official IoT Hub end-to-end
 * tests inject, struck inside the hub in the middle of a batch. Every message id must arrive, repeats
 * only for what was in flight at the fault, D2C in per-device order, and every status back to
 * connected without help.
 */
import { strict as assert } from 'node:assert';
import type { SimulatedHub } from '../../src/simulator';
import { startTestHub } from '../helpers/hub';
import { FAULTS } from './faults';
import { Pipeline } from './pipeline';

const DEVICES = ['rel-a', 'rel-b', 'rel-c'];
const PER_PHASE = 8;

describe('reliability: fault matrix', function () {
  this.timeout(120_000);
  let hub: SimulatedHub | undefined;
  let pipeline: Pipeline | undefined;

  afterEach(async () => {
    await pipeline?.close();
    pipeline = undefined;
    await hub?.close();
    hub = undefined;
  });

  const sides = [
    ['device-out, c2d-send -> device-in, telemetry-in', 'nodes'],
    ['core device links, c2d-send, telemetry-in', 'core'],
  ] as const;
  for (const [title, deviceSide] of sides) {
    describe(title, () => {
      for (const fault of FAULTS) {
        it(`${fault}: nothing lost, repeats only in flight, D2C order kept, back to connected`, async () => {
          hub = await startTestHub({ c2d: { maxQueueDepth: 10_000 } });
          pipeline = await Pipeline.start(hub, { devices: DEVICES, deviceSide });
          const injected = await pipeline.runFault(fault, PER_PHASE);
          assert.ok(injected.hits > 0, `the fault ${fault} hit nothing`);
          if (process.env.RELIABILITY_VERBOSE) {
            process.stdout.write(
              `        ${JSON.stringify({ faults: pipeline.faultsInjected, d2cRepeats: pipeline.d2c.report().duplicates, c2dRepeats: pipeline.c2d.report().duplicates })}\n`,
            );
          }
          assert.deepEqual(pipeline.problems(), []);
          assert.equal(pipeline.d2c.report().sent, DEVICES.length * PER_PHASE * 4);
          assert.equal(pipeline.c2d.report().sent, DEVICES.length * PER_PHASE * 4);
        });
      }
    });
  }
});
