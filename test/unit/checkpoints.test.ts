import { strict as assert } from 'node:assert';
import { checkpointKey, readCheckpoints, writeCheckpoints } from '../../src/iothub/checkpoints';

describe('telemetry checkpoints, kept per endpoint and consumer group', () => {
  const key = checkpointKey('IHSuProd.servicebus.windows.net:5671', 'myhub', '$Default');

  it('keys by host (without port, case-folded), entity and consumer group', () => {
    assert.equal(key, 'ihsuprod.servicebus.windows.net/myhub/$default');
    assert.notEqual(checkpointKey('a.example', 'hub', 'dashboard'), checkpointKey('a.example', 'hub', '$Default'));
  });

  it("reads only this endpoint's positions and writes them back beside the others", () => {
    const stored = writeCheckpoints(writeCheckpoints(undefined, key, { '0': 5, '1': 7 }), 'other/hub/$default', { '0': 900 });
    assert.deepEqual(readCheckpoints(stored, key), { '0': 5, '1': 7 });
    assert.deepEqual(readCheckpoints(stored, 'other/hub/$default'), { '0': 900 });
    assert.deepEqual(readCheckpoints(stored, 'never/seen/$default'), {});
    const updated = writeCheckpoints(stored, key, { '0': 6, '1': 7 });
    assert.deepEqual(updated['other/hub/$default'], { '0': 900 });
    assert.deepEqual(updated[key], { '0': 6, '1': 7 });
  });

  it("takes the flat positions of earlier versions as this endpoint's, and replaces that layout on the next write", () => {
    const legacy = { '0': 12, '3': 40 };
    assert.deepEqual(readCheckpoints(legacy, key), { '0': 12, '3': 40 });
    assert.deepEqual(writeCheckpoints(legacy, key, { '0': 13, '3': 40 }), { [key]: { '0': 13, '3': 40 } });
  });

  it('ignores what is not a position', () => {
    assert.deepEqual(readCheckpoints({ [key]: { '0': 'x', '1': -1, '2': 1.5, '3': 4 } }, key), { '3': 4 });
    assert.deepEqual(readCheckpoints('garbage', key), {});
    assert.deepEqual(readCheckpoints(null, key), {});
  });
});
