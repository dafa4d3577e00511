export { startRelay, type Relay, type RelayDeps } from './relay.js';
