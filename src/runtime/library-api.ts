/**
 * What the runtime offers an app that uses relay365 as a library: the queued relay (`createRelay`) and
 * the nodemailer transport. The package entry (`src/index.ts`) re-exports this list whole, so the
 * runtime and the package name these exports in one place.
 */
export { createRelay, type CreateRelayOptions, type QueuedRelay, type QueueResult, type QueueOptions, type MessageStatus, type RelayEvent } from './library.js';
export {
  relay365Transport,
  Relay365TransportError,
  type Relay365Transport,
  type Relay365TransportOptions,
  type Relay365MessageOptions,
  type Relay365SentMessageInfo,
  type Relay365SendDetails,
  type Relay365RecipientOutcome,
} from './nodemailer-transport.js';
