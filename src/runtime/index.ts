export { startRelay, type Relay, type RelayDeps } from './relay.js';
export { openOutboxStore, openHttpStore, openSharedTokenCache } from './stores.js';
