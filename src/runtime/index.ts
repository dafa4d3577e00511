export { startRelay, openOutboxStore, openSharedTokenCache, type Relay, type RelayDeps } from './relay.js';
