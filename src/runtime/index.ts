export { startRelay, type Relay, type RelayDeps } from './relay.js';
export { openOutboxStore, openIntegrationStore, openSharedTokenCache } from './stores.js';
export { reloadRelay, configChanges, RELOADABLE_PATHS, type ReloadReport } from './reload.js';
export * from './library-api.js';
