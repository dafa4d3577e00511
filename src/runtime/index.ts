export { startRelay, openOutboxStore, openHttpStore, openSharedTokenCache, type Relay, type RelayDeps } from './relay.js';
