// The parts of node-red-node-test-helper 0.3 these tests use (it ships no types).
declare module 'node-red-node-test-helper' {
  import type { Node, NodeAPI } from 'node-red';
  type NodeModule = (RED: NodeAPI) => void;
  interface Helper {
    init(runtimePath: string, settings?: Record<string, unknown>): void;
    startServer(): Promise<void>;
    stopServer(): Promise<void>;
    load(nodes: NodeModule | NodeModule[], flow: object[], credentials?: Record<string, Record<string, string>>): Promise<void>;
    setFlows(flow: object[], type: 'full' | 'flows' | 'nodes', credentials?: Record<string, Record<string, string>>): Promise<void>;
    unload(): Promise<void>;
    getNode(id: string): Node;
    clearFlows(): Promise<void>;
  }
  const helper: Helper;
  export default helper;
}
