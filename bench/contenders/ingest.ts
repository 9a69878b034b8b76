/** The simulator's own D2C ingest ceiling: raw senders on one or more connections, each its own device. */
import rhea = require('rhea');
import type { Sender } from 'rhea-promise';
import type { BenchParams, HubInfo } from '../protocol';
import { openRaw, type RawConnection } from '../raw';
import { payloadOf, runCredit, type Contender } from '../runners';
import { ingestDevice } from './devices';

export function rawIngest(connections: 'one' | 'many') {
  return (hub: HubInfo, params: BenchParams): Contender => {
    const count = connections === 'one' ? 1 : params.ingestConnections;
    const raws: RawConnection[] = [];
    const senders: Sender[] = [];
    const body = rhea.message.data_section(payloadOf(params.size));
    return {
      async setup() {
        for (let i = 0; i < count; i++) {
          const deviceId = ingestDevice(i);
          const raw = await openRaw(hub, hub.devices[deviceId], { deviceId });
          raws.push(raw);
          senders.push(await raw.connection.createSender({ target: { address: `/devices/${deviceId}/messages/events` } }));
        }
        return {};
      },
      round: () => runCredit(senders, params.durationMs, (i) => ({ message_id: `m${i}`, body })),
      async close() {
        for (const s of senders) await s.close().catch(() => undefined);
        for (const r of raws) await r.close();
      },
    };
  };
}
