/**
 * The client's durable links, one import for their users: HubSender (hub-sender.ts), HubReceiver
 * (hub-receiver.ts), both built on DurableLink (durable-link.ts).
 */
export type { Message as AmqpMessage } from 'rhea-promise';
export { DurableLink, type DurableLinkEvents } from './durable-link';
export { HubReceiver, type HubReceiverEvents, type HubReceiverOptions, type Received, type Settlement } from './hub-receiver';
export { HubSender, type HubSenderOptions, type SendOptions } from './hub-sender';
