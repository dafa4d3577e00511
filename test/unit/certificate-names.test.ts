import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { NetworkInterfaceInfo } from 'node:os';
import { X509Certificate } from 'node:crypto';
import { certificateNames, createSelfSignedCertificate, listenerAddressNames, subjectAltNameEntries } from '../../src/ingress/smtp/index.js';

const nic = (address: string, family: 'IPv4' | 'IPv6', internal = false): NetworkInterfaceInfo =>
  ({ address, family, internal, netmask: '', mac: '00:00:00:00:00:00', cidr: null, ...(family === 'IPv6' ? { scopeid: 0 } : {}) }) as NetworkInterfaceInfo;

const INTERFACES = {
  lo: [nic('127.0.0.1', 'IPv4', true), nic('::1', 'IPv6', true)],
  eth0: [nic('192.0.2.2', 'IPv4'), nic('fd00::2', 'IPv6'), nic('fe80::fc:ff:fe00:1', 'IPv6')],
};

describe('the names of the generated certificate', () => {
  it('gives a 0.0.0.0 listener every IPv4 interface address, a :: listener every address but link-local ones, and a concrete listener its own', () => {
    assert.deepEqual(listenerAddressNames(['0.0.0.0'], INTERFACES), ['127.0.0.1', '192.0.2.2']);
    assert.deepEqual(listenerAddressNames(['::'], INTERFACES), ['127.0.0.1', '::1', '192.0.2.2', 'fd00::2']);
    assert.deepEqual(listenerAddressNames(['192.0.2.2', '::ffff:192.0.2.9'], INTERFACES), ['192.0.2.2', '::ffff:192.0.2.9']);
  });

  it('writes names as clients compare them: lower case, no trailing dot, IPv6 compressed, IPv4-mapped as IPv4, no wildcard address, each once', () => {
    assert.deepEqual(certificateNames('Relay.LAN.test.', ['::ffff:192.0.2.9', 'FD00:0:0::25', '0.0.0.0', '::', '127.0.0.1', 'relay.lan.test']), [
      'relay.lan.test',
      'localhost',
      '127.0.0.1',
      '::1',
      '192.0.2.9',
      'fd00::25',
    ]);
  });
});

describe("reading a certificate's names with node:crypto (no X.509 library at start)", () => {
  it('reads back the names a generated certificate was made with', async () => {
    const pair = await createSelfSignedCertificate('Relay.LAN.test', ['fd00::25', '192.0.2.9', 'scanner.lan.test']);
    const text = new X509Certificate(pair.certPem).subjectAltName;
    // node:crypto writes IPv6 addresses in full, upper case; certificateNames' canonical form is compressed.
    assert.deepEqual(
      subjectAltNameEntries(text).map((e) => `${e.kind}:${e.value}`),
      [
        'DNS:relay.lan.test',
        'DNS:localhost',
        'IP Address:127.0.0.1',
        'IP Address:0:0:0:0:0:0:0:1',
        'IP Address:FD00:0:0:0:0:0:0:25',
        'IP Address:192.0.2.9',
        'DNS:scanner.lan.test',
      ],
    );
  });

  it('takes a value node:crypto wrote as a JSON string (a separator or a quote inside) as one entry, and other kinds as they are', () => {
    // As node:crypto prints a certificate whose DNS names are `evil.example, DNS:x.example` and `q"uote.example`.
    const text = 'DNS:"evil.example\\u002c DNS:x.example", DNS:"q\\"uote.example", email:a@b.example, IP Address:0:0:0:0:0:0:0:1';
    assert.deepEqual(subjectAltNameEntries(text), [
      { kind: 'DNS', value: 'evil.example, DNS:x.example' },
      { kind: 'DNS', value: 'q"uote.example' },
      { kind: 'email', value: 'a@b.example' },
      { kind: 'IP Address', value: '0:0:0:0:0:0:0:1' },
    ]);
    assert.deepEqual(subjectAltNameEntries(undefined), []);
  });
});

describe('smtp.tls.names', () => {
  it('takes host names, *.domain and IP addresses, and names the entry that is none of them', async () => {
    const { configSchema } = await import('../../src/config/index.js');
    const ok = configSchema.safeParse({ smtp: { tls: { names: ['relay.contoso.lan', '*.contoso.lan', '10.0.0.5', 'fd00::25', 'relay'] } } });
    assert.ok(ok.success, JSON.stringify(ok.error?.issues));
    const bad = configSchema.safeParse({ smtp: { tls: { names: ['relay.contoso.lan', 'smtp://relay:2525'] } } });
    assert.ok(!bad.success);
    assert.deepEqual(
      bad.error.issues.map((i) => [i.path.join('.'), i.message]),
      [['smtp.tls.names.1', 'must be a host name (relay.contoso.lan, *.contoso.lan) or an IP address']],
    );
  });
});
