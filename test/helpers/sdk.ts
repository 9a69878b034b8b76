/** Official Azure SDK clients wired to a test simulator. */
import { Client as DeviceClient, Message } from 'azure-iot-device';
import { Amqp as DeviceAmqp } from 'azure-iot-device-amqp';
import { Client as ServiceClient } from 'azure-iothub';
import { decodeFeedback, type FeedbackRecord } from '../../src/amqp/feedback-codec';
import type { SimulatedHub } from '../../src/simulator';

export { Message };

export type FeedbackRecordSeen = FeedbackRecord;

/** A device client over AMQPS that trusts the simulator's certificate. */
export async function openDevice(hub: SimulatedHub, deviceId: string, moduleId?: string): Promise<DeviceClient> {
  const client = DeviceClient.fromConnectionString(hub.deviceConnectionString(deviceId, moduleId), DeviceAmqp);
  client.on('error', () => undefined);
  await client.setOptions({ ca: hub.certificate?.cert });
  await client.open();
  return client;
}

/** The service client trusts the simulator through NODE_EXTRA_CA_CERTS (test/run.ts sets it). */
export async function openService(hub: SimulatedHub): Promise<ServiceClient> {
  const client = ServiceClient.fromConnectionString(hub.serviceConnectionString());
  await client.open();
  return client;
}

/** Collects every feedback record the service SDK's feedback receiver delivers. */
export async function collectFeedback(service: ServiceClient): Promise<FeedbackRecordSeen[]> {
  const records: FeedbackRecordSeen[] = [];
  const receiver = await new Promise<NodeJS.EventEmitter>((resolve, reject) =>
    service.getFeedbackReceiver((err, r) => (err ? reject(err) : resolve(r as unknown as NodeJS.EventEmitter))),
  );
  receiver.on('message', (msg: { data: Buffer | string }) => {
    records.push(...decodeFeedback(msg.data));
  });
  receiver.on('errorReceived', () => undefined);
  return records;
}

export async function closeQuietly(...clients: Array<{ close(): Promise<unknown> } | undefined>): Promise<void> {
  for (const c of clients) {
    try {
      await c?.close();
    } catch {
      // already gone
    }
  }
}
