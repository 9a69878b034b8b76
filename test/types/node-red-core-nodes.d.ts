// The core Node-RED nodes the example tests load; each module registers its node types.
declare module '@node-red/nodes/core/common/20-inject.js' {
  const init: (RED: import('node-red').NodeAPI) => void;
  export = init;
}
declare module '@node-red/nodes/core/common/21-debug.js' {
  const init: (RED: import('node-red').NodeAPI) => void;
  export = init;
}
declare module '@node-red/nodes/core/common/90-comment.js' {
  const init: (RED: import('node-red').NodeAPI) => void;
  export = init;
}
declare module '@node-red/nodes/core/function/15-change.js' {
  const init: (RED: import('node-red').NodeAPI) => void;
  export = init;
}
declare module '@node-red/nodes/core/common/25-catch.js' {
  const init: (RED: import('node-red').NodeAPI) => void;
  export = init;
}
declare module '@node-red/nodes/core/function/10-function.js' {
  const init: (RED: import('node-red').NodeAPI) => void;
  export = init;
}
