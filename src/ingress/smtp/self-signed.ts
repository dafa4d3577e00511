import { X509Certificate, webcrypto } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import type * as X509 from '@peculiar/x509';
import { Relay365Error } from '../../errors.js';

/** PEM texts of a certificate and its private key (PKCS#8). */
export interface CertificatePair {
  certPem: string;
  keyPem: string;
}

/** Where the TLS identity of the SMTP front door came from. */
export interface TlsIdentity extends CertificatePair {
  /** `configured` (certFile/keyFile), `generated` (just made) or `reused` (made on an earlier start). */
  origin: 'configured' | 'generated' | 'reused';
  /** The certificate file in use. */
  certPath: string;
  /** SHA-256 of the certificate (DER), as `openssl x509 -noout -fingerprint -sha256` prints it (`AB:CD:...`). */
  fingerprint256: string;
  /** The names (DNS names and IP addresses) in the certificate's subjectAltName, which clients verify. */
  names: string[];
  /** Where the pair a generated one replaced was kept (`relay.<time>.crt`, its key beside it). */
  replacedPath?: string;
}

const ECDSA: webcrypto.EcKeyGenParams & webcrypto.EcdsaParams = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
/** Validity of a generated certificate: 825 days, the longest the CA/Browser Forum ever allowed a TLS certificate. */
const DAYS = 825;
/** A generated certificate this close to its end is replaced at start. */
const RENEW_BEFORE_MS = 30 * 86_400_000;

function toPem(der: ArrayBuffer, label: string): string {
  const b64 = Buffer.from(der)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

/**
 * A name as certificates and clients compare it: lower case, no trailing dot, an IPv6 address in its
 * RFC 5952 form, an IPv4-mapped IPv6 address as the IPv4 address a client dials.
 */
function canonicalName(name: string): string {
  const n = name.trim().toLowerCase().replace(/\.$/, '');
  if (isIP(n) !== 6) return n;
  const v6 = new URL(`http://[${n}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(v6);
  if (!mapped) return v6;
  const [hi, lo] = [parseInt(mapped[1]!, 16), parseInt(mapped[2]!, 16)];
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

/**
 * The names a certificate for `hostname` carries: it, `localhost`, `127.0.0.1`, `::1` and
 * `extraNames`, canonical, without duplicates and without the wildcard addresses `0.0.0.0` and `::`
 * (no client dials them).
 */
export function certificateNames(hostname: string, extraNames: readonly string[] = []): string[] {
  return [...new Set([hostname, 'localhost', '127.0.0.1', '::1', ...extraNames].map(canonicalName))].filter((n) => n !== '' && n !== '0.0.0.0' && n !== '::');
}

/**
 * The addresses clients reach listeners on `hosts` by: a concrete address as it is, `0.0.0.0` every
 * IPv4 address of the machine's interfaces, `::` every address (Node's `::` socket takes IPv4 too).
 * IPv6 link-local addresses are left out: they need a zone (`%eth0`) no certificate can name.
 */
export function listenerAddressNames(hosts: readonly string[], interfaces: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces()): string[] {
  const all = Object.values(interfaces).flatMap((list) => list ?? []);
  const usable = all.filter((i) => !(i.family === 'IPv6' && /^fe[89ab]/i.test(i.address)));
  return hosts.flatMap((host) => {
    if (host === '0.0.0.0') return usable.filter((i) => i.family === 'IPv4').map((i) => i.address);
    if (host === '::' || host === '') return usable.map((i) => i.address);
    return [host];
  });
}

/**
 * @peculiar/x509 (13 packages, about 3 MB of heap once loaded) only when a self-signed certificate is
 * made: on the first start with a TLS listener and no smtp.certFile, or when the pair is replaced.
 * Reading a certificate (a configured one, or the pair made on an earlier start) uses node:crypto.
 */
async function x509Library(): Promise<typeof X509> {
  const x509 = await import('@peculiar/x509');
  // A process-wide setting of @peculiar/x509; done here rather than at import (no side effects at import).
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  return x509;
}

/**
 * The entries of node:crypto's `subjectAltName` text (`DNS:a.example, IP Address:127.0.0.1`), each as
 * its kind and value. Node writes a value that holds a separator or a quote as a JSON string literal
 * (Node.js docs, `x509.subjectAltName`: splitting at `, ` is not safe), which is read back here.
 */
export function subjectAltNameEntries(text: string | undefined): Array<{ kind: string; value: string }> {
  const entries: Array<{ kind: string; value: string }> = [];
  let at = 0;
  while (text !== undefined && at < text.length) {
    const colon = text.indexOf(':', at);
    if (colon < 0) break;
    const kind = text.slice(at, colon);
    let end: number;
    let value: string;
    if (text[colon + 1] === '"') {
      end = colon + 2;
      while (end < text.length && text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      end += 1;
      value = JSON.parse(text.slice(colon + 1, end)) as string;
    } else {
      const comma = text.indexOf(', ', colon + 1);
      end = comma < 0 ? text.length : comma;
      value = text.slice(colon + 1, end);
    }
    entries.push({ kind, value });
    if (!text.startsWith(', ', end)) break;
    at = end + 2;
  }
  return entries;
}

/** The names (DNS names and IP addresses) in a certificate's subjectAltName, canonical. */
function sanNames(certPem: string): string[] {
  return subjectAltNameEntries(new X509Certificate(certPem).subjectAltName)
    .filter((e) => e.kind === 'DNS' || e.kind === 'IP Address')
    .map((e) => canonicalName(e.value));
}

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && [...a].sort().join(' ') === [...b].sort().join(' ');
}

function serial(): string {
  // Positive 16-byte serial (RFC 5280 4.1.2.2: at most 20 octets, non-negative).
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = bytes[0]! & 0x7f;
  return Buffer.from(bytes).toString('hex');
}

/**
 * Makes a self-signed server certificate (ECDSA P-256: quick to make, and accepted by every client
 * in use: Node, OpenSSL-based swaks, curl and Python) for `hostname`, `localhost`, `127.0.0.1` and
 * `::1`, plus `extraNames` (host names or IP addresses).
 */
export async function createSelfSignedCertificate(hostname: string, extraNames: readonly string[] = []): Promise<CertificatePair> {
  const x509 = await x509Library();
  const names = certificateNames(hostname, extraNames);
  const keys = await webcrypto.subtle.generateKey(ECDSA, true, ['sign', 'verify']);
  // RFC 5280 4.1.2.4 wants a non-empty subject; the CN is informative, clients match the SAN.
  const cn = hostname.replace(/[,=+<>#;"\\]/g, '') || 'relay365';
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${cn}, O=relay365`,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + DAYS * 86_400_000),
    keys,
    signingAlgorithm: ECDSA,
    extensions: [
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      new x509.SubjectAlternativeNameExtension(names.map((value) => ({ type: isIP(value) ? ('ip' as const) : ('dns' as const), value }))),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return {
    certPem: cert.toString('pem') + '\n',
    keyPem: toPem(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY'),
  };
}

/** Why a pair cannot be used, or undefined when it can (the key matches and the certificate parses). */
function unusable(pair: CertificatePair): string | undefined {
  try {
    // Throws "key values mismatch" when the key is not the certificate's.
    createSecureContext({ cert: pair.certPem, key: pair.keyPem });
    new X509Certificate(pair.certPem);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

async function readPair(certPath: string, keyPath: string): Promise<CertificatePair | undefined> {
  try {
    return { certPem: await readFile(certPath, 'utf8'), keyPem: await readFile(keyPath, 'utf8') };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Writes a file through a temporary name, so that a crash never leaves half a key behind. */
async function writeAtomically(path: string, text: string, mode: number): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, text, { mode });
  await chmod(tmp, mode); // the umask may have narrowed or the file may have existed
  await rename(tmp, path);
}

/** What a certificate is known by: its fingerprint and names. */
function identify(certPem: string): Pick<TlsIdentity, 'fingerprint256' | 'names'> {
  return { fingerprint256: new X509Certificate(certPem).fingerprint256, names: sanNames(certPem) };
}

/** `relay.crt` -> `relay.2026-12-02T12-50-00Z.crt`: a name that sorts by time and is valid everywhere. */
function asideName(path: string, at: Date): string {
  const stamp = at
    .toISOString()
    .replace(/\.\d+Z$/, 'Z')
    .replaceAll(':', '-');
  return path.replace(/(\.[a-z]+)$/, `.${stamp}$1`);
}

/**
 * The certificate and key for the SMTP front door: `certFile` and `keyFile` when configured, else a
 * self-signed pair kept in `<dataDir>/tls/relay.crt` and `relay.key` (mode 0600), made on the first
 * start and reused afterwards. It is replaced when it is unreadable, does not match, expires within
 * 30 days, or names other names than {@link certificateNames} gives for `hostname` and `extraNames`
 * (a client verifying a name the certificate lacks refuses it); the replaced pair is renamed to
 * `relay.<time>.crt` and `relay.<time>.key`, so that nothing a client was given is lost.
 *
 * @throws Relay365Error `R365_TLS_CERTIFICATE_UNUSABLE` when the configured files cannot be read or
 *   do not belong together, or the generated pair cannot be written.
 */
export async function loadTlsIdentity(options: {
  certFile?: string | undefined;
  keyFile?: string | undefined;
  dataDir: string;
  hostname: string;
  extraNames?: readonly string[];
}): Promise<TlsIdentity> {
  const { certFile, keyFile } = options;
  if (certFile !== undefined || keyFile !== undefined) {
    if (certFile === undefined || keyFile === undefined) {
      throw new Relay365Error(
        'R365_TLS_CERTIFICATE_UNUSABLE',
        `smtp.${certFile === undefined ? 'certFile' : 'keyFile'} is missing: give both smtp.certFile and smtp.keyFile, or neither for a self-signed certificate.`,
      );
    }
    let pair: CertificatePair;
    try {
      pair = { certPem: await readFile(certFile, 'utf8'), keyPem: await readFile(keyFile, 'utf8') };
    } catch (cause) {
      throw new Relay365Error(
        'R365_TLS_CERTIFICATE_UNUSABLE',
        `Cannot read the SMTP TLS certificate or key (${(cause as Error).message}). Check smtp.certFile and smtp.keyFile and the files' permissions.`,
        { cause },
      );
    }
    const problem = unusable(pair);
    if (problem) {
      throw new Relay365Error(
        'R365_TLS_CERTIFICATE_UNUSABLE',
        `smtp.certFile and smtp.keyFile cannot be used together: ${problem}. Give the PEM certificate and its own private key.`,
        {
          details: { certFile, keyFile },
        },
      );
    }
    return { ...pair, origin: 'configured', certPath: certFile, ...identify(pair.certPem) };
  }

  const dir = resolve(options.dataDir, 'tls');
  const certPath = join(dir, 'relay.crt');
  const keyPath = join(dir, 'relay.key');
  const wanted = certificateNames(options.hostname, options.extraNames);
  try {
    const existing = await readPair(certPath, keyPath);
    if (existing && !unusable(existing) && Date.parse(new X509Certificate(existing.certPem).validTo) - Date.now() > RENEW_BEFORE_MS) {
      const known = identify(existing.certPem);
      if (sameNames(known.names, wanted)) return { ...existing, origin: 'reused', certPath, ...known };
    }
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const pair = await createSelfSignedCertificate(options.hostname, options.extraNames);
    let replacedPath: string | undefined;
    if (existing) {
      // Kept, not deleted: clients may have been given it, and going back is a rename.
      const now = new Date();
      replacedPath = asideName(certPath, now);
      await rename(keyPath, asideName(keyPath, now));
      await rename(certPath, replacedPath);
    }
    // The key first: a certificate without its key is replaced at the next start anyway.
    await writeAtomically(keyPath, pair.keyPem, 0o600);
    await writeAtomically(certPath, pair.certPem, 0o644);
    return { ...pair, origin: 'generated', certPath, ...identify(pair.certPem), ...(replacedPath ? { replacedPath } : {}) };
  } catch (cause) {
    throw new Relay365Error(
      'R365_TLS_CERTIFICATE_UNUSABLE',
      `Cannot keep the self-signed SMTP certificate in ${dir}: ${(cause as Error).message}. Make dataDir writable, or set smtp.certFile and smtp.keyFile.`,
      {
        cause,
        details: { dir },
      },
    );
  }
}
