/**
 * The internals of smtp-server and nodemailer that relay365 relies on, beyond their documented API.
 * Both are pinned to exact versions in package.json; when an upgrade removes or changes one of these,
 * this file fails naming the member and the relay365 file that uses it. docs/operations.md
 * ("Upgrading smtp-server or nodemailer") says what to do then.
 *
 * No socket is opened: the connections below sit on an unconnected net.Socket, or on a stand-in whose
 * writes are recorded.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import net from 'node:net';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import addressparser from 'nodemailer/lib/addressparser';
import MailComposer from 'nodemailer/lib/mail-composer';
import MimeNode from 'nodemailer/lib/mime-node';
import NodemailerSmtpConnection from 'nodemailer/lib/smtp-connection';
import XOAuth2 from 'nodemailer/lib/xoauth2';
import { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';

const require = createRequire(import.meta.url);
const rootPackage = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { dependencies: Record<string, string> };

/** The installed version of a dependency and the folder of its ESM build. */
async function installed(name: 'smtp-server' | 'nodemailer'): Promise<{ version: string; esm: string }> {
  const manifest = require.resolve(`${name}/package.json`);
  const { version } = JSON.parse(await readFile(manifest, 'utf8')) as { version: string };
  return { version, esm: join(dirname(manifest), 'dist', 'esm') };
}

const smtpServer = await installed('smtp-server');
const nodemailer = await installed('nodemailer');
const librarySource = async (lib: { esm: string }, file: string): Promise<string> => readFile(join(lib.esm, file), 'utf8');

type Member = readonly [name: string, parameters: number, usedBy: string];

/** Asserts each member is a function on `owner` with the number of declared parameters relay365 was written against. */
function assertMethods(library: string, ownerName: string, owner: object, members: readonly Member[]): void {
  for (const [name, parameters, usedBy] of members) {
    const value = (owner as Record<string, unknown>)[name];
    assert.equal(typeof value, 'function', `${library}: ${ownerName}.${name} is no longer a function (${usedBy} relies on it)`);
    assert.equal(
      (value as (...args: unknown[]) => unknown).length,
      parameters,
      `${library}: ${ownerName}.${name} now declares ${(value as (...args: unknown[]) => unknown).length} parameters, not ${parameters} (${usedBy} overrides or calls it)`,
    );
  }
}

/** Asserts `source` (a library function's or file's text) still contains each fragment relay365 mirrors or matches. */
function assertSource(library: string, what: string, source: string, fragments: ReadonlyArray<readonly [fragment: string | RegExp, why: string]>): void {
  for (const [fragment, why] of fragments) {
    const found = typeof fragment === 'string' ? source.includes(fragment) : fragment.test(source);
    assert.ok(found, `${library}: ${what} no longer contains ${String(fragment)}; ${why}`);
  }
}

const CONNECTION = 'src/ingress/smtp/connection.ts';
const SANDBOX = 'src/sandbox/exchange-smtp.ts';

/** A connection of a server that never listens, on a socket that never connects. */
function idleConnection(options: ConstructorParameters<typeof SMTPServer>[0] = {}): { server: SMTPServer; connection: SMTPConnection; socket: net.Socket } {
  // logger: false also silences the warning about smtp-server's built-in certificate.
  const server = new SMTPServer({ disableReverseLookup: true, logger: false, ...options });
  const socket = new net.Socket();
  return { server, connection: new SMTPConnection(server, socket), socket };
}

describe('pinned libraries', () => {
  it('package.json pins smtp-server and nodemailer to the exact versions installed', () => {
    for (const [name, lib] of [
      ['smtp-server', smtpServer],
      ['nodemailer', nodemailer],
    ] as const) {
      const wanted = rootPackage.dependencies[name];
      assert.match(wanted ?? '', /^\d+\.\d+\.\d+$/, `package.json must pin ${name} to an exact version (is ${wanted}): relay365 relies on its internals`);
      assert.equal(lib.version, wanted, `${name} ${lib.version} is installed but package.json pins ${wanted}: run npm ci`);
    }
  });
});

describe(`smtp-server internals (${smtpServer.version})`, () => {
  it('keeps the SMTPConnection methods RelayConnection and the sandbox override or call', () => {
    assertMethods('smtp-server', 'SMTPConnection.prototype', SMTPConnection.prototype, [
      ['init', 0, `${CONNECTION} and ${SANDBOX} (greeting delay)`],
      ['connectionReady', 1, `${CONNECTION} and ${SANDBOX} (greeting delay)`],
      ['_setListeners', 1, `${CONNECTION} and ${SANDBOX} (init)`],
      ['_onCommand', 2, `${CONNECTION} (command cap, graceful close)`],
      ['handler_AUTH', 2, `${CONNECTION} and ${SANDBOX} (where AUTH is allowed, lockout)`],
      ['send', 3, `${CONNECTION} and ${SANDBOX} (reply rewriting, refusal log)`],
      ['_sendGreeting', 0, SANDBOX],
      ['_onClose', 0, `${CONNECTION} (live connections)`],
      ['close', 0, `${CONNECTION} (421 closes)`],
    ]);
  });

  it('keeps the SMTPServer methods RelayServer and the sandbox override or call', () => {
    assertMethods('smtp-server', 'SMTPServer.prototype', SMTPServer.prototype, [
      ['connect', 2, `${CONNECTION} and ${SANDBOX} (their own connection class)`],
      ['_onError', 1, `${CONNECTION} and ${SANDBOX} (connect)`],
      ['_onClientConnect', 1, `${CONNECTION} and ${SANDBOX} (connect)`],
      ['updateSecureContext', 1, 'src/ingress/smtp/ingress.ts (certificate reload)'],
    ]);
  });

  it('keeps the connection and server fields relay365 reads, with their types', () => {
    const { server, connection, socket } = idleConnection();
    const fields: ReadonlyArray<readonly [string, unknown, string]> = [
      ['_server', server, 'the server of the connection'],
      ['_socket', socket, 'destroy() ends a connection without a reply'],
      ['_closed', false, 'gone: an async check outlives its connection'],
      ['_closing', false, 'ending'],
      ['_dataStream', false, 'busy: DATA under way'],
      ['_handlerPending', false, 'busy: a command being handled'],
      ['_upgrading', false, 'plaintext behind STARTTLS is not a command'],
      ['_nextHandler', false, 'an AUTH continuation line is not a new command'],
      ['_ready', false, "the early-talker check: the greeting delay's whole effect"],
    ];
    for (const [name, expected, why] of fields) {
      assert.equal(
        (connection as unknown as Record<string, unknown>)[name],
        expected,
        `smtp-server: a new SMTPConnection's ${name} is not ${String(expected)} (${why}; ${CONNECTION})`,
      );
    }
    assert.equal(typeof connection.session, 'object', 'smtp-server: SMTPConnection.session');
    assert.ok(server.connections instanceof Set, 'smtp-server: SMTPServer.connections is no longer a Set (connect adds to it)');
    assert.ok(server.server instanceof net.Server, 'smtp-server: SMTPServer.server is no longer a net.Server (ingress.ts listens and closes on it)');
    assert.ok(
      server._pendingSockets instanceof Map,
      'smtp-server: SMTPServer._pendingSockets is no longer a Map (ingress.ts destroys sockets in their TLS handshake at close)',
    );
  });

  it("keeps one session object for a connection's life (RelayServer.bySession maps it to its connection)", async () => {
    const source = await librarySource(smtpServer, 'smtp-connection.js');
    assert.equal(
      source.match(/this\.session = /g)?.length,
      1,
      'smtp-server: smtp-connection.js assigns this.session more than once: bySession would lose the connection',
    );
  });

  it('still waits 100 ms in init(), the wait RelayConnection.init replaces; its other steps are the ones RelayConnection mirrors', () => {
    assertSource('smtp-server', 'SMTPConnection.prototype.init', SMTPConnection.prototype.init.toString(), [
      [
        /setTimeout\(\(\) => this\.connectionReady\(\), 100\)/,
        `the greeting delay in ${CONNECTION} replaces this timer; compare the new init() with RelayConnection.init and ExchangeConnection.init`,
      ],
      ['this._setListeners(', 'RelayConnection.init calls _setListeners as init() does'],
      [
        'this._server.options.maxClients && this._server.connections.size > this._server.options.maxClients',
        'RelayConnection.init keeps the maxClients backstop',
      ],
      ["' Too many connected clients, try again in a moment'", 'the maxClients reply RelayConnection.init sends and LIBRARY_REWRITES rewrites'],
    ]);
  });

  it('refuses a command read before the greeting with 421 You talk too soon, and sends nothing for plaintext behind STARTTLS', () => {
    const { connection } = idleConnection({ name: 'relay.test' });
    const replies: Array<[number, unknown]> = [];
    connection.send = (code, data) => void replies.push([code, data]);
    connection._upgrading = true;
    connection._onCommand(Buffer.from('EHLO early'));
    assert.deepEqual(replies, [], 'smtp-server: _onCommand answered a command buffered during a TLS upgrade');
    connection._upgrading = false;
    connection._onCommand(Buffer.from('EHLO early'));
    assert.deepEqual(replies, [[421, 'relay.test You talk too soon']], "smtp-server: _onCommand's answer before the greeting (the early-talker check)");
  });

  it("greets nobody once the connection is closing (RelayConnection.init's deferred connectionReady relies on it)", () => {
    const { connection } = idleConnection();
    let greeted = false;
    connection._sendGreeting = () => void (greeted = true);
    connection._closing = true;
    connection.connectionReady();
    assert.equal(greeted, false, 'smtp-server: connectionReady greeted a connection that an early-talker refusal closed');
    assertSource('smtp-server', 'SMTPConnection.prototype.connectionReady', connection.connectionReady.toString(), [
      ['this._closing || this._closed', 'the check above'],
      ['this._ready = true', 'the end of the early-talker window (_ready)'],
      ['this._sendGreeting()', 'the greeting'],
    ]);
  });

  it('closes the connection after any 421, and writes no enhanced code when the context is false', () => {
    const { connection } = idleConnection();
    const written: string[] = [];
    connection._socket = { destroyed: false, readyState: 'open', write: (s: string) => void written.push(s) } as unknown as net.Socket;
    let closed = 0;
    connection.close = () => void (closed += 1);
    connection.send(250, '2.1.0 Accepted', false);
    connection.send(250, ['relay.test Nice to meet you', 'PIPELINING']);
    connection.send(421, '4.3.2 Shutting down', false);
    assert.deepEqual(
      written,
      ['250 2.1.0 Accepted\r\n', '250-relay.test Nice to meet you\r\n250 PIPELINING\r\n', '421 4.3.2 Shutting down\r\n'],
      'smtp-server: how send() writes a reply',
    );
    assert.equal(closed, 1, 'smtp-server: send(421) no longer closes the connection (REPLIES with 421 rely on it)');
  });

  it('hands each parsed command line to oncommand within the write, before the event loop turns', () => {
    const parser = new SMTPStream();
    const commands: string[] = [];
    parser.oncommand = (command: Buffer, next?: () => void) => {
      commands.push(command.toString());
      next?.();
    };
    parser.write(Buffer.from('EHLO early\r\nMAIL FROM:<a@b.example>\r\n'));
    // RelayConnection.init greets after a setImmediate: bytes read in the poll phase before it are refused.
    assert.deepEqual(
      commands,
      ['EHLO early', 'MAIL FROM:<a@b.example>'],
      `smtp-server: SMTPStream parses asynchronously now (${CONNECTION}'s early-talker check assumes it does not)`,
    );
  });

  it('mirrors SMTPServer.connect, which RelayServer.connect and the sandbox replace with their own connection class', () => {
    const body = SMTPServer.prototype.connect
      .toString()
      .replace(/^[^{]*\{|\}$/g, '')
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
    assert.deepEqual(
      body,
      [
        'let connection = new SMTPConnection(this, socket, socketOptions);',
        'this.connections.add(connection);',
        "connection.on('error', err => this._onError(err));",
        "connection.on('connect', data => this._onClientConnect(data));",
        'connection.init();',
      ],
      `smtp-server: SMTPServer.connect changed; bring RelayServer.connect (${CONNECTION}) and ExchangeSmtpServer.connect (${SANDBOX}) in line`,
    );
  });

  it('still words the replies relay365 and the sandbox rewrite as they match them', async () => {
    const source =
      (await librarySource(smtpServer, 'smtp-connection.js')) +
      (await librarySource(smtpServer, 'smtp-stream.js')) +
      (await librarySource(smtpServer, 'sasl.js'));
    const relay = `LIBRARY_REWRITES in ${CONNECTION}`;
    const sandbox = 'LIBRARY_REPLY_REWRITES in src/sandbox/exchange-replies.ts';
    assertSource('smtp-server', 'its reply texts', source, [
      ["' Too many connected clients, try again in a moment'", relay],
      ["new Error('Command line too long')", relay],
      ["'Error: ' + err.message", `${relay} (the parser's errors)`],
      ["'Error: too many unrecognized commands'", relay],
      ["'HTTP requests not allowed'", relay],
      ["'Error: message exceeds fixed maximum message size '", relay],
      ["' You talk too soon'", `${CONNECTION} (the early-talker refusal the docs name)`],
      ["'Ready to start TLS'", sandbox],
      ["'MAIL_FROM_OK'", sandbox],
      ["'RCPT_TO_OK'", sandbox],
      ["'Flushed'", sandbox],
      ["'Bye'", sandbox],
      ["'Error: command not recognized'", sandbox],
      ["'Error: send ' + (this._server.options.lmtp ? 'LHLO' : 'HELO/EHLO') + ' first'", sandbox],
      ["'Error: need MAIL command'", sandbox],
      ["'Error: need RCPT command'", sandbox],
      ["'Error: invalid userdata'", sandbox],
    ]);
  });
});

describe(`nodemailer internals (${nodemailer.version})`, () => {
  it('keeps the SMTPConnection methods the SMTP transport and its pool call', () => {
    assertMethods('nodemailer', 'lib/smtp-connection SMTPConnection.prototype', NodemailerSmtpConnection.prototype, [
      ['connect', 1, 'src/delivery/smtp-pool.ts, smtp-transport.ts'],
      ['login', 2, 'src/delivery/smtp-pool.ts, smtp-transport.ts'],
      ['send', 3, 'src/delivery/smtp-pool.ts, smtp-transport.ts'],
      ['reset', 1, 'src/delivery/smtp-pool.ts'],
      ['quit', 0, 'src/delivery/smtp-pool.ts, smtp-transport.ts'],
      ['close', 0, 'src/delivery/smtp-pool.ts, smtp-transport.ts'],
      ['_formatError', 4, 'src/delivery/smtp-transport.ts (originalCode)'],
    ]);
  });

  it("keeps relay365's own code as originalCode when it relabels an error EAUTH", () => {
    const connection = new NodemailerSmtpConnection({ host: '127.0.0.1', port: 1 });
    const tokenError = Object.assign(new Error('sign in again'), { code: 'R365_LOGIN_REQUIRED' });
    const relabelled = (
      connection as unknown as { _formatError: (e: Error, type: string, response: false, command: string) => Error & { code?: string; originalCode?: string } }
    )._formatError(tokenError, 'EAUTH', false, 'AUTH XOAUTH2');
    assert.equal(relabelled.code, 'EAUTH');
    assert.equal(
      relabelled.originalCode,
      'R365_LOGIN_REQUIRED',
      'nodemailer: _formatError no longer keeps the code it replaces as originalCode (src/delivery/smtp-transport.ts failure())',
    );
  });

  it('sends a message object by its pipe(), listening for errors through on() (the pool hands it a stand-in, not a stream)', async () => {
    const send = NodemailerSmtpConnection.prototype.send.toString();
    assertSource('nodemailer', 'SMTPConnection.prototype.send', send, [
      ["typeof message.on === 'function'", 'src/delivery/smtp-pool.ts bodyOf() has on() for this'],
      ["typeof message.pipe === 'function'", 'bodyOf() marks the message started when pipe() is called'],
      ['message.pipe(stream)', 'bodyOf()'],
      ['message.destroy()', 'bodyOf() has destroy() for a refused envelope'],
    ]);
    assertSource('nodemailer', 'smtp-connection', await librarySource(nodemailer, 'smtp-connection/index.js'), [
      ["stream.removeListener('error', onStreamError)", 'bodyOf() has removeListener() for this'],
    ]);
  });

  it('asks provisionCallback for the token and builds the XOAUTH2 string from it', async () => {
    const asked: Array<[string, boolean]> = [];
    const oauth2 = new XOAuth2({
      user: 'relay@contoso.example',
      provisionCallback: (user: string, renew: boolean, callback: (err: Error | null, accessToken?: string, expires?: number) => void) => {
        asked.push([user, renew]);
        callback(null, 'token-for-the-test', Date.now() + 60_000);
      },
    });
    const token = await new Promise<string>((resolve, reject) => oauth2.getToken(true, (err, t) => (err ? reject(err) : resolve(t))));
    assert.deepEqual(asked, [['relay@contoso.example', true]], 'nodemailer: XOAuth2.getToken no longer calls provisionCallback(user, renew, callback)');
    assert.equal(token, 'token-for-the-test');
    assert.equal(
      Buffer.from(oauth2.buildXOAuth2Token(token), 'base64').toString(),
      'user=relay@contoso.example\x01auth=Bearer token-for-the-test\x01\x01',
      'nodemailer: the XOAUTH2 string (user= is the mailbox, also for a shared mailbox signed in as another user)',
    );
  });

  it('parses address lists with addressparser as the header policy and Graph transport expect', () => {
    assert.equal(typeof addressparser, 'function', 'nodemailer: lib/addressparser has no default function export');
    assert.deepEqual(addressparser('Scanner <scanner@contoso.example>, ops@contoso.example'), [
      { address: 'scanner@contoso.example', name: 'Scanner' },
      { address: 'ops@contoso.example', name: '' },
    ]);
    assert.deepEqual(addressparser('Team: a@contoso.example, B <b@contoso.example>;'), [
      {
        name: 'Team',
        group: [
          { address: 'a@contoso.example', name: '' },
          { address: 'b@contoso.example', name: 'B' },
        ],
      },
    ]);
    assert.deepEqual(addressparser('Team: a@contoso.example, B <b@contoso.example>;', { flatten: true }), [
      { address: 'a@contoso.example', name: '' },
      { address: 'b@contoso.example', name: 'B' },
    ]);
  });

  it('composes a message with MailComposer and a report with MimeNode, build() returning a promise of the bytes', async () => {
    const composed = await new MailComposer({ from: 'relay@contoso.example', to: 'a@example.net', subject: 'Hello', text: 'hi' }).compile().build();
    assert.ok(
      Buffer.isBuffer(composed),
      'nodemailer: MailComposer.compile().build() without a callback no longer resolves with a Buffer (src/delivery/compose.ts)',
    );
    assert.match(composed.toString(), /^Subject: Hello\r$/m);
    const root = new MimeNode('multipart/report; report-type=delivery-status');
    root.setHeader({ From: 'relay@contoso.example', Subject: 'Undelivered' });
    root.createChild('text/plain; charset=utf-8').setContent('not delivered');
    root.createChild('message/delivery-status').setContent('Reporting-MTA: dns; relay.test\r\n');
    const report = await root.build();
    assert.ok(Buffer.isBuffer(report), 'nodemailer: MimeNode.build() without a callback no longer resolves with a Buffer (src/outbox/bounce.ts)');
    assert.match(report.toString(), /Content-Type: multipart\/report; report-type=delivery-status;/);
    assert.match(report.toString(), /Content-Type: message\/delivery-status/);
  });
});
