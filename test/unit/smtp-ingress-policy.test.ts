import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Allowlist, parseCidr } from '../../src/ingress/smtp/allowlist.js';
import { ADDRESS_FAILURES_FACTOR, LoginLockout, lockoutAddress } from '../../src/ingress/smtp/login-lockout.js';
import { MessageCollector, headerFromAddresses, readHeaders, traceFields } from '../../src/message/index.js';
import { PasswordChecker, hashPassword, parsePasswordHash, verifyPassword } from '../../src/ingress/smtp/password.js';
import { SenderPolicy, asciiAddress } from '../../src/admission/index.js';
import { seededInts } from '../helpers/random.js';

describe('SMTP passwords', () => {
  it('hashes with scrypt N=2^15 r=8 p=1 and a 16-byte salt, and verifies only the right password', async () => {
    const hash = await hashPassword('correct horse');
    assert.match(hash, /^scrypt\$32768\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
    const parsed = parsePasswordHash(hash);
    assert.ok(!('problem' in parsed));
    assert.equal(parsed.salt.length, 16);
    assert.equal(await verifyPassword('correct horse', hash), true);
    assert.equal(await verifyPassword('correct horsE', hash), false);
    assert.equal(await verifyPassword('correct horse', 'scrypt$not-a-hash'), false);
    assert.notEqual(await hashPassword('correct horse'), hash, 'every hash has its own salt');
  });

  it('refuses hashes it cannot verify, with the reason', () => {
    assert.match((parsePasswordHash('bcrypt$2b$10$x') as { problem: string }).problem, /scrypt\$N\$r\$p/);
    assert.match((parsePasswordHash('scrypt$1000$8$1$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNoaGFzaA==') as { problem: string }).problem, /power of two/);
    assert.match((parsePasswordHash('scrypt$16777216$8$1$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNoaGFzaA==') as { problem: string }).problem, /MiB/);
  });

  it('remembers a login that passed, so that the next one needs no key derivation', async () => {
    const hash = await hashPassword('pw-1');
    const checker = new PasswordChecker();
    let t = performance.now();
    assert.equal(await checker.check('alice', 'pw-1', hash), true);
    const first = performance.now() - t;
    t = performance.now();
    assert.equal(await checker.check('alice', 'pw-1', hash), true);
    const second = performance.now() - t;
    assert.ok(second < first / 10, `cached check took ${second} ms, the first ${first} ms`);
    assert.equal(await checker.check('alice', 'pw-2', hash), false, 'another password is not taken from the cache');
    assert.equal(await checker.check('bob', 'pw-1', await hashPassword('other')), false);
    // The cache holds HMACs only: no password in the object.
    assert.ok(!JSON.stringify([...(checker as unknown as { known: Set<string> }).known]).includes('pw-1'));
  });
});

describe('SMTP allowlist', () => {
  it('matches IPv4 and IPv6 CIDRs, and IPv4-mapped IPv6 peers as IPv4', () => {
    const list = new Allowlist([
      { cidr: '192.0.2.0/24', value: 'lan' },
      { cidr: '2001:db8::/32', value: 'v6' },
      { cidr: '::ffff:198.51.100.7', value: 'mapped' },
      { cidr: '203.0.113.9', value: 'one' },
    ]);
    assert.equal(list.match('192.0.2.77')?.value, 'lan');
    assert.equal(list.match('::ffff:192.0.2.77')?.value, 'lan');
    assert.equal(list.match('::FFFF:192.0.2.77')?.value, 'lan');
    assert.equal(list.match('192.0.3.1'), undefined);
    assert.equal(list.match('2001:db8:1::5')?.value, 'v6');
    assert.equal(list.match('2001:db9::5'), undefined);
    assert.equal(list.match('198.51.100.7')?.value, 'mapped');
    assert.equal(list.match('203.0.113.9')?.value, 'one');
    assert.equal(list.match('203.0.113.10'), undefined);
    assert.equal(list.match('not-an-ip'), undefined);
  });

  it('explains a CIDR it cannot read', () => {
    assert.match((parseCidr('10.0.0.0/33') as { problem: string }).problem, /0-32/);
    assert.match((parseCidr('printer.lan') as { problem: string }).problem, /not an IPv4 or IPv6 address/);
    assert.match((parseCidr('10.0.0.0/8/1') as { problem: string }).problem, /not a CIDR/);
  });
});

describe('SMTP sender policy', () => {
  it('allows exact addresses and @domain rules, case-insensitively and for IDN domains in either form', () => {
    const policy = new SenderPolicy(['Relay@Contoso.example', '@fabrikam.example', '@bücher.example']);
    assert.ok(policy.allows('relay@contoso.EXAMPLE'));
    assert.ok(policy.allows('anyone@FABRIKAM.example'));
    assert.ok(!policy.allows('anyone@sub.fabrikam.example'), '@domain is that domain, not its subdomains');
    assert.ok(!policy.allows('other@contoso.example'));
    assert.ok(policy.allows('x@xn--bcher-kva.example'));
    assert.ok(policy.allows('x@bücher.example'));
    assert.ok(new SenderPolicy(undefined).allows('whoever@example.net'), 'without rules the Router decides');
    assert.equal(asciiAddress('Ünïcode@Bücher.example'), 'Ünïcode@xn--bcher-kva.example');
  });
});

describe('SMTP login lockout', () => {
  /** One whole login with its verdict; true when it started a lock, 'locked' when refused at once. */
  function login(lockout: LoginLockout, address: string, user: string | undefined, ok: boolean): boolean | 'locked' {
    const attempt = lockout.begin(address, user);
    return 'lockedUntil' in attempt ? 'locked' : attempt.settle(ok);
  }

  it('locks a user at an address after N failures within the window, for the lock time', () => {
    let now = 1_000_000;
    const lockout = new LoginLockout({ failures: 3, windowMs: 60_000, lockMs: 300_000 }, () => now);
    assert.equal(login(lockout, '192.0.2.1', 'alice', false), false);
    now += 61_000; // the first failure leaves the window
    assert.equal(login(lockout, '192.0.2.1', 'alice', false), false);
    assert.equal(login(lockout, '192.0.2.1', 'alice', false), false);
    assert.equal(lockout.lockedUntil('192.0.2.1', 'alice'), undefined);
    assert.equal(login(lockout, '192.0.2.1', 'alice', false), true);
    assert.equal(lockout.lockedUntil('192.0.2.1', 'alice')?.getTime(), now + 300_000);
    assert.equal(login(lockout, '192.0.2.1', 'alice', true), 'locked', 'the right password is refused while locked');
    assert.equal(lockout.lockedUntil('192.0.2.2', 'alice'), undefined, 'other addresses are not affected');
    now += 300_001;
    assert.equal(lockout.lockedUntil('192.0.2.1', 'alice'), undefined);
  });

  it('does not lock out a second user behind the same address (a NAT), nor the address, for one guesser', () => {
    const lockout = new LoginLockout({ failures: 3, windowMs: 60_000, lockMs: 300_000 });
    for (let i = 0; i < 3; i++) login(lockout, '192.0.2.1', 'alice', false);
    assert.ok(lockout.lockedUntil('192.0.2.1', 'alice'));
    assert.equal(login(lockout, '192.0.2.1', 'bob', true), false, 'bob logs in from the same address');
    assert.equal(lockout.lockedUntil('192.0.2.1'), undefined);
    // Guessing names that do not exist locks only those names.
    for (let i = 0; i < 3; i++) login(lockout, '192.0.2.1', undefined, false);
    assert.equal(login(lockout, '192.0.2.1', undefined, false), 'locked');
    assert.equal(login(lockout, '192.0.2.1', 'bob', true), false);
  });

  it('counts guesses under way: of 20 sent at once with a limit of 10, the last 10 are refused unchecked', () => {
    const lockout = new LoginLockout({ failures: 10, windowMs: 60_000, lockMs: 300_000 });
    const attempts = Array.from({ length: 20 }, () => lockout.begin('192.0.2.9', 'alice'));
    const running = attempts.filter((a) => !('lockedUntil' in a));
    assert.equal(running.length, 10);
    const locks = running.map((a) => ('settle' in a ? a.settle(false) : false));
    assert.deepEqual(locks.filter(Boolean).length, 1, 'the tenth failure starts the lock');
    assert.ok(lockout.lockedUntil('192.0.2.9', 'alice'));
  });

  it('beginWhenFree: logins past the limit wait for the verdicts under way; right passwords let them all in, wrong ones lock them out', async () => {
    const lockout = new LoginLockout({ failures: 10, windowMs: 60_000, lockMs: 300_000 });
    // 30 printers behind one NAT log in as one user at once, with the right password.
    const pending = Array.from({ length: 30 }, () => lockout.beginWhenFree('192.0.2.20', 'scanner', 5000));
    const settled: boolean[] = [];
    const all = pending.map(async (p) => {
      const a = await p;
      assert.ok(!('lockedUntil' in a), 'no right login is refused');
      // Verdicts come a moment later, as a password check's would.
      await new Promise((r) => setTimeout(r, 5));
      settled.push(a.settle(true));
    });
    await Promise.all(all);
    assert.equal(settled.length, 30);
    assert.equal(lockout.lockedUntil('192.0.2.20', 'scanner'), undefined);

    // 20 wrong guesses at once: 10 are checked, and the 10 that waited meet the lock those started.
    const guesses = Array.from({ length: 20 }, () => lockout.beginWhenFree('192.0.2.21', 'alice', 5000));
    let checked = 0;
    let refused = 0;
    await Promise.all(
      guesses.map(async (p) => {
        const a = await p;
        if ('lockedUntil' in a) return void (refused += 1);
        checked += 1;
        await new Promise((r) => setTimeout(r, 5));
        a.settle(false);
      }),
    );
    assert.equal(checked, 10);
    assert.equal(refused, 10);
    assert.ok(lockout.lockedUntil('192.0.2.21', 'alice'));
  });

  it('beginWhenFree gives up after maxWaitMs when the verdicts under way never come', async () => {
    const lockout = new LoginLockout({ failures: 2, windowMs: 60_000, lockMs: 300_000 });
    const held = [lockout.begin('192.0.2.30', 'bob'), lockout.begin('192.0.2.30', 'bob')];
    assert.ok(held.every((a) => !('lockedUntil' in a)));
    const t0 = Date.now();
    const late = await lockout.beginWhenFree('192.0.2.30', 'bob', 100);
    assert.ok('lockedUntil' in late, 'refused once the wait is over');
    assert.ok(Date.now() - t0 >= 90, `waited ${Date.now() - t0} ms`);
  });

  it('locks a whole address that sprays guesses over many names, and an IPv6 client by its /64', () => {
    const lockout = new LoginLockout({ failures: 2, windowMs: 60_000, lockMs: 300_000 });
    for (let i = 0; i < 2 * ADDRESS_FAILURES_FACTOR; i++) login(lockout, '2001:db8:1:2::17', `user${i}`, false);
    assert.ok(lockout.lockedUntil('2001:db8:1:2:ffff::1'), 'another address of the same /64');
    assert.equal(login(lockout, '2001:db8:1:2::99', 'carol', true), 'locked');
    assert.equal(lockout.lockedUntil('2001:db8:1:3::17'), undefined, 'the next /64 is another client');
    assert.equal(lockoutAddress('2001:DB8:0001:0002:aaaa::1'), '2001:db8:1:2::/64');
    assert.equal(lockoutAddress('::1'), '0:0:0:0::/64');
    assert.equal(lockoutAddress('192.0.2.1'), '192.0.2.1');
  });

  it('keeps a lock however many other addresses fail afterwards (a flood cannot evict it)', () => {
    const lockout = new LoginLockout({ failures: 2, windowMs: 60_000, lockMs: 300_000 });
    login(lockout, '192.0.2.1', 'alice', false);
    assert.equal(login(lockout, '192.0.2.1', 'alice', false), true);
    // One failure from each of 12,000 addresses: two records each, far past what is tracked.
    for (let i = 0; i < 12_000; i++) login(lockout, `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, 'alice', false);
    assert.ok(lockout.size <= 10_002, `tracked records stay bounded (${lockout.size})`);
    assert.ok(lockout.lockedUntil('192.0.2.1', 'alice'), 'the lock is still there');
  });
});

describe('SMTP message handling', () => {
  it('measures the longest line across chunk boundaries and notices NUL bytes', () => {
    const c = new MessageCollector(1_000_000);
    c.push(Buffer.from('Subject: x\r\n\r\n' + 'a'.repeat(600)));
    c.push(Buffer.from('b'.repeat(500) + '\r\nshort\r\n'));
    assert.equal(c.longest, 1102);
    assert.equal(c.hasNul, false);
    c.push(Buffer.from([0x61, 0x00, 0x0d, 0x0a]));
    assert.equal(c.hasNul, true);
    const small = new MessageCollector(10);
    small.push(Buffer.from('0123456789AB'));
    assert.equal(small.oversized, true);
  });

  it('hands readHeaders a start of the message that reads the same as the whole, however it was chunked', () => {
    const messages = [
      'From: a@contoso.example\r\nSubject: x\r\n\r\nFrom: body@x.example\r\n' + 'z'.repeat(3000),
      'From: a@contoso.example\nSubject: bare LF\n\nFrom: body@x.example\n',
      '\r\nFrom: body@x.example\r\n',
      '\nFrom: body@x.example\n',
      'From: never@ends.example\r\nSubject: no blank line\r\n',
      'From: a@contoso.example\r\nX: y\n\nFrom: mixed@x.example\r\n\r\n',
    ];
    // A fixed seed: the same cuts every run.
    const rand = seededInts(0x9e3779b9);
    for (const text of messages) {
      const whole = Buffer.from(text);
      for (let round = 0; round < 200; round++) {
        const c = new MessageCollector(1_000_000);
        for (let at = 0; at < whole.length;) {
          const next = Math.min(whole.length, at + 1 + rand(round % 2 === 0 ? 4 : 200));
          c.push(whole.subarray(at, next));
          at = next;
        }
        assert.deepEqual(readHeaders(c.head()), readHeaders(whole), `${JSON.stringify(text.slice(0, 30))}, cut ${round}`);
        assert.deepEqual(c.bytes(Buffer.from('P: 1\r\n')), Buffer.concat([Buffer.from('P: 1\r\n'), whole]));
      }
    }
    const long = new MessageCollector(1_000_000);
    long.push(Buffer.from('Subject: x\r\n\r'));
    long.push(Buffer.from('\nbody'));
    long.push(Buffer.from('z'.repeat(100_000)));
    assert.equal(long.head().length, 'Subject: x\r\n\r\nbody'.length, 'the head stops at the chunk that ended the header section');
  });

  it('reads every From address, folded or not, and flags a From without one', () => {
    const h = readHeaders(Buffer.from('From: "Printer, 2nd floor"\r\n <printer@contoso.example>\r\nTo: a@b.example\r\n\r\nFrom: body@x.example\r\n'));
    assert.deepEqual(headerFromAddresses(h), ['printer@contoso.example']);
    assert.deepEqual(headerFromAddresses(readHeaders(Buffer.from('From: undisclosed:;\r\n\r\nx'))), ['']);
    assert.deepEqual(headerFromAddresses(readHeaders(Buffer.from('Subject: none\n\nx'))), []);
  });

  it('adds Received, and Message-ID and Date only when missing, in the line ending of the message', () => {
    const info = {
      helo: 'printer.lan',
      clientAddress: '192.0.2.5',
      hostname: 'relay.test',
      protocol: 'ESMTPSA',
      id: 'abc.1',
      recipients: ['x@example.net'],
      date: new Date('2026-01-02T03:04:05Z'),
    };
    const full = traceFields(readHeaders(Buffer.from('Date: Thu, 1 Jan 2026 00:00:00 +0000\r\nMessage-ID: <m1@contoso.example>\r\n\r\nbody\r\n')), info);
    assert.equal(full.messageId, '<m1@contoso.example>');
    assert.equal(
      full.prefix.toString(),
      'Received: from printer.lan ([192.0.2.5])\r\n\tby relay.test (relay365) with ESMTPSA id abc.1\r\n\tfor <x@example.net>;\r\n\tFri, 02 Jan 2026 03:04:05 +0000\r\n',
    );
    const hostile = traceFields(readHeaders(Buffer.from('Subject: x\r\n\r\n')), { ...info, helo: 'evil;by\u00e9(x)' });
    assert.match(hostile.prefix.toString(), /^Received: from evil\?by\?\?x\? \(\[192\.0\.2\.5\]\)\r\n/);
    const bare = traceFields(readHeaders(Buffer.from('Subject: hi\n\nbody\n')), {
      ...info,
      clientAddress: '2001:db8::5',
      recipients: ['a@x.example', 'b@x.example'],
    });
    assert.match(bare.messageId, /^<[0-9a-f-]{36}@relay\.test>$/);
    assert.equal(
      bare.prefix.toString(),
      `Received: from printer.lan ([IPv6:2001:db8::5])\n\tby relay.test (relay365) with ESMTPSA id abc.1;\n\tFri, 02 Jan 2026 03:04:05 +0000\nMessage-ID: ${bare.messageId}\nDate: Fri, 02 Jan 2026 03:04:05 +0000\n`,
    );
  });
});
