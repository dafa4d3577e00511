import { webcrypto, X509Certificate, createHash } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;

/** PEM texts of a certificate and its private key (PKCS#8). */
export interface CertificatePair {
  certPem: string;
  keyPem: string;
}

/** The sandbox's own CA and the server certificate it issues for its listeners. */
export interface SandboxTls {
  ca: CertificatePair;
  server: CertificatePair;
}

const ECDSA: webcrypto.EcKeyGenParams & webcrypto.EcdsaParams = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const RSA: webcrypto.RsaHashedKeyGenParams = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };

function toPem(der: ArrayBuffer, label: string): string {
  const b64 = Buffer.from(der)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

async function exportKey(key: CryptoKey): Promise<string> {
  return toPem(await webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

function serial(): string {
  // Positive 16-byte serial (RFC 5280 4.1.2.2: at most 20 octets, non-negative).
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = bytes[0]! & 0x7f;
  return Buffer.from(bytes).toString('hex');
}

/**
 * Makes a fresh CA and a server certificate for `localhost`, `127.0.0.1` and `::1` (plus `hostnames`).
 * ECDSA P-256 keeps generation fast; every TLS client in use (Node, curl, Python, swaks) accepts it.
 */
export async function createSandboxTls(hostnames: string[] = [], days = 825): Promise<SandboxTls> {
  const notBefore = new Date(Date.now() - 60_000);
  const notAfter = new Date(Date.now() + days * 86_400_000);
  const caKeys = await webcrypto.subtle.generateKey(ECDSA, true, ['sign', 'verify']);
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: 'CN=relay365 sandbox CA, O=relay365 sandbox',
    notBefore,
    notAfter,
    keys: caKeys,
    signingAlgorithm: ECDSA,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const serverKeys = await webcrypto.subtle.generateKey(ECDSA, true, ['sign', 'verify']);
  const dns = ['localhost', ...hostnames.filter((h) => !/^[\d.:]+$/.test(h))];
  const ips = ['127.0.0.1', '::1', ...hostnames.filter((h) => /^[\d.:]+$/.test(h))];
  const serverCert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: 'CN=localhost, O=relay365 sandbox',
    issuer: caCert.subject,
    notBefore,
    notAfter,
    publicKey: serverKeys.publicKey,
    signingKey: caKeys.privateKey,
    signingAlgorithm: ECDSA,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      new x509.SubjectAlternativeNameExtension([
        ...dns.map((value) => ({ type: 'dns' as const, value })),
        ...ips.map((value) => ({ type: 'ip' as const, value })),
      ]),
      await x509.AuthorityKeyIdentifierExtension.create(caCert, false),
    ],
  });
  return {
    ca: { certPem: caCert.toString('pem') + '\n', keyPem: await exportKey(caKeys.privateKey) },
    server: { certPem: serverCert.toString('pem') + '\n', keyPem: await exportKey(serverKeys.privateKey) },
  };
}

/**
 * A self-signed RSA certificate for an app registration's certificate credential, as
 * `New-SelfSignedCertificate` or `openssl req -x509` would make. Returns the SHA-1 and SHA-256
 * thumbprints (hex, upper case) that Entra shows and MSAL takes.
 */
export async function createClientCertificate(subject = 'CN=relay365 app'): Promise<CertificatePair & { thumbprintSha1: string; thumbprintSha256: string }> {
  const keys = await webcrypto.subtle.generateKey(RSA, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: subject,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 365 * 86_400_000),
    keys,
    signingAlgorithm: RSA,
  });
  const certPem = cert.toString('pem') + '\n';
  return { certPem, keyPem: await exportKey(keys.privateKey), ...certificateThumbprints(certPem) };
}

/** SHA-1 and SHA-256 thumbprints of a PEM certificate, hex upper case. */
export function certificateThumbprints(certPem: string): { thumbprintSha1: string; thumbprintSha256: string } {
  const der = new X509Certificate(certPem).raw;
  return {
    thumbprintSha1: createHash('sha1').update(der).digest('hex').toUpperCase(),
    thumbprintSha256: createHash('sha256').update(der).digest('hex').toUpperCase(),
  };
}
