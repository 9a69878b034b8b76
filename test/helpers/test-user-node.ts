/**
 * A minimal palette node used only by the config-node tests: it registers with an iothub-connection,
 * and on input sends msg.payload as a device message for `deviceId`.
 */
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from 'node-red';
import rhea = require('rhea');
import { HubSender } from '../../src/iothub/links';
import type { ConnectionNode } from '../../src/nodes/iothub-connection';

interface UserDef extends NodeDef {
  hub: string;
  deviceId: string;
}

export function testUserNode(RED: NodeAPI): void {
  function TestHubUser(this: Node, def: UserDef): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const config = RED.nodes.getNode(def.hub) as ConnectionNode;
    let sender: HubSender | undefined;
    config.register(node);
    node.on('input', (msg: NodeMessageInFlow, send: (m: NodeMessageInFlow) => void, done: (err?: Error) => void) => {
      config
        .connection()
        .then(async (connection) => {
          sender ??= new HubSender(connection, `/devices/${def.deviceId}/messages/events`, { deviceId: def.deviceId });
          await sender.send({ message_id: String(msg.payload), body: rhea.message.data_section(Buffer.from(String(msg.payload))) } as rhea.Message);
          send(msg);
          done();
        })
        .catch((err: Error) => done(err));
    });
    node.on('close', (_removed: boolean, done: () => void) => {
      void sender?.close();
      config.deregister(node, done);
    });
  }
  RED.nodes.registerType('test-hub-user', TestHubUser as unknown as Parameters<NodeAPI['nodes']['registerType']>[1]);
}
