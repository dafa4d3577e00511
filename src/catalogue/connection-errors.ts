import type { Explanation } from './types.js';

/**
 * Failures below SMTP: DNS, TCP, TLS. Named by Node's error codes (errno names and OpenSSL's
 * certificate verification codes), each with what it means for a connection to Exchange Online.
 *
 * A certificate or TLS-version failure is the path's, not the message's: every message of the mailbox
 * would fail the same way until an admin fixes the trust store, the proxy or the clock. So it is
 * `blocked`: the mailbox pauses with the explanation, its queue is kept, and a probe resumes it once
 * the connection verifies again (it used to be `permanent`, which bounced every queued message).
 */
const ROWS: Record<string, Omit<Explanation, 'id'>> = {
  ENOTFOUND: {
    class: 'transient',
    cause: 'The SMTP host name does not resolve (DNS).',
    fix: 'Check the host name (smtp.office365.com for the global cloud) and the DNS resolver of this machine.',
  },
  EAI_AGAIN: { class: 'transient', cause: 'DNS lookup of the SMTP host failed for now.', fix: 'Check the DNS resolver; relay365 retries.' },
  ECONNREFUSED: {
    class: 'transient',
    cause: 'The SMTP host refused the TCP connection: nothing listens on that port.',
    fix: 'Check host and port (587 for Exchange Online) and any firewall in between; many networks block outbound 587.',
  },
  ETIMEDOUT: {
    class: 'transient',
    cause: 'The SMTP host did not answer in time (connect, greeting or a command).',
    fix: 'Check that outbound TCP 587 is allowed by the firewall; relay365 retries.',
  },
  ECONNRESET: { class: 'transient', cause: 'The connection was reset by the server or a middlebox.', fix: 'Nothing to do if rare: relay365 retries.' },
  ESOCKET: { class: 'transient', cause: 'The connection failed at the socket level.', fix: 'Check the network path to the SMTP host; relay365 retries.' },
  ECONNECTION: { class: 'transient', cause: 'The connection to the SMTP host closed unexpectedly.', fix: 'Nothing to do if rare: relay365 retries.' },
  DEPTH_ZERO_SELF_SIGNED_CERT: {
    class: 'blocked',
    cause: 'The SMTP server presented a self-signed certificate that is not trusted.',
    fix: 'If a TLS-inspecting proxy sits in between, add its CA with network.caFile; never turn verification off.',
  },
  SELF_SIGNED_CERT_IN_CHAIN: {
    class: 'blocked',
    cause: "The SMTP server's certificate chains to a CA this machine does not trust.",
    fix: "Add the CA with network.caFile (a TLS-inspecting proxy's), or for the sandbox set sandbox.caFile.",
  },
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: {
    class: 'blocked',
    cause: "The SMTP server's certificate cannot be verified against a trusted CA.",
    fix: 'Add the issuing CA with network.caFile.',
  },
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: {
    class: 'blocked',
    cause: "The SMTP server's certificate was issued by a CA this machine does not trust.",
    fix: 'Add the issuing CA with network.caFile, or update the system CA store.',
  },
  CERT_HAS_EXPIRED: {
    class: 'blocked',
    cause: "The SMTP server's certificate has expired.",
    fix: 'Check the clock of this machine; otherwise the host is not Exchange Online.',
  },
  ERR_TLS_CERT_ALTNAME_INVALID: {
    class: 'blocked',
    cause: 'The certificate does not name the host relay365 connected to (wrong host name).',
    fix: 'Use the host name the certificate is for (smtp.office365.com), not an IP address or alias.',
  },
  ERR_SSL_UNSUPPORTED_PROTOCOL: {
    class: 'blocked',
    cause: 'The server offered only TLS below 1.2, which relay365 refuses (Exchange Online requires 1.2+).',
    fix: 'Check that the host is Exchange Online and no proxy downgrades TLS.',
  },
  ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION: {
    class: 'blocked',
    cause: 'The server and relay365 share no TLS version of 1.2 or newer.',
    fix: 'Check that the host is Exchange Online and no proxy downgrades TLS.',
  },
};

/** Explains a connection-level error by its Node or OpenSSL code, or undefined when unknown. */
export function explainConnectionError(code: string | undefined, message = ''): Explanation | undefined {
  const key =
    code && ROWS[code]
      ? code
      : (Object.keys(ROWS).find((k) => message.includes(k)) ??
        (/unsupported protocol|protocol version/i.test(message) ? 'ERR_SSL_UNSUPPORTED_PROTOCOL' : undefined));
  const row = key ? ROWS[key] : undefined;
  return row && key ? { id: `net-${key.toLowerCase()}`, ...row } : undefined;
}
