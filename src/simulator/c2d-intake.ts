/**
 * Cloud-to-device intake: a service's send on `/messages/devicebound`, checked (target, registration,
 * size, throttling) and queued for the device. Separate from the C2D queues themselves, which deliver,
 * and from the link routing, which only decides that a link is the devicebound one.
 */
import type * as rhea from 'rhea';
import { messageSize } from '../amqp/message-rules';
import { settleIncoming } from './amqp';
import { parseAddress } from './addresses';
import type { C2dQueues } from './c2d';
import type { SimulatorOptions } from './options';
import type { Registry } from './registry';
import type { HubStats } from './stats';
import { THROTTLED, type Throttle } from './throttle';

export interface C2dIntakeParts {
  options: SimulatorOptions;
  registry: Registry;
  c2d: C2dQueues;
  stats: HubStats;
  throttle: Throttle;
}

export class C2dIntake {
  constructor(private readonly parts: C2dIntakeParts) {}

  /** A transfer on the devicebound link: rejected with the reason, or queued and accepted. */
  onSend(ctx: rhea.EventContext): void {
    const { options, registry, c2d, stats, throttle } = this.parts;
    const delivery = ctx.delivery as rhea.Delivery;
    const message = ctx.message as rhea.Message;
    const to = parseAddress(typeof message.to === 'string' ? message.to : undefined, options.hubName);
    if (to.kind !== 'c2d') {
      settleIncoming(delivery, 'rejected', {
        condition: 'com.microsoft:argument-error',
        description: "The message 'to' must be /devices/<id>/messages/devicebound.",
      });
      return;
    }
    const device = registry.getDevice(to.deviceId);
    if (!device || (to.moduleId !== undefined && !device.modules.has(to.moduleId))) {
      settleIncoming(delivery, 'rejected', { condition: 'amqp:not-found', description: `The device '${to.deviceId}' is not registered.` });
      return;
    }
    const size = messageSize(message);
    if (size > options.c2d.maxMessageBytes) {
      settleIncoming(delivery, 'rejected', {
        condition: 'amqp:link:message-size-exceeded',
        description: `The message is ${size} bytes; at most ${options.c2d.maxMessageBytes} are allowed.`,
      });
      return;
    }
    if (throttle.take()) {
      settleIncoming(delivery, 'rejected', THROTTLED);
      return;
    }
    const error = c2d.enqueue(to.deviceId, to.moduleId, device.generationId, message);
    if (error) {
      settleIncoming(delivery, 'rejected', error);
      return;
    }
    stats.c2dAccepted++;
    delivery.accept();
  }
}
