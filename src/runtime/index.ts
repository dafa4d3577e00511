export { startRelay, type Relay, type RelayDeps } from './relay.js';
export { openOutboxStore, openHttpStore, openSharedTokenCache } from './stores.js';
export { reloadRelay, configChanges, RELOADABLE_PATHS, type ReloadReport } from './reload.js';
export { createRelay, type CreateRelayOptions, type QueuedRelay, type QueueResult, type QueueOptions, type MessageStatus, type RelayEvent } from './library.js';
export {
  relay365Transport,
  Relay365TransportError,
  type Relay365Transport,
  type Relay365TransportOptions,
  type Relay365SentMessageInfo,
  type Relay365SendDetails,
  type Relay365RecipientOutcome,
} from './nodemailer-transport.js';
