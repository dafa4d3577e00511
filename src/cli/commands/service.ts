import { existsSync, realpathSync } from 'node:fs';
import { connect } from 'node:net';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Argument, Command } from 'commander';
import type { Config } from '../../config/index.js';
import { configPath } from '../context.js';

/** Where systemd's `StateDirectory=relay365` puts the data folder (systemd.exec(5), "RuntimeDirectory=... StateDirectory="). */
export const SYSTEMD_STATE_DIR = '/var/lib/relay365';

/** What varies between one machine's unit file and another's. */
export interface SystemdUnitOptions {
  /** The program that runs relay365 and its first arguments, before the command (`serve`, `service ready`). */
  exec: string[];
  /** Absolute path of the config file the service reads. */
  configFile: string;
  /** A dedicated system user (and group of the same name), or undefined for `DynamicUser=yes`. */
  user: string | undefined;
  /** A listener on a port below 1024 (25, 465, 587, 80): the one capability it needs, and no other. */
  bindsLowPorts: boolean;
  /** Where the installed docs are (Documentation=), e.g. `<package>/docs/operations.md`. */
  documentation: string;
  /** Folders outside `StateDirectory` the service writes (a `dataDir` set elsewhere): `ProtectSystem=strict` makes the rest read-only. */
  readWritePaths: string[];
}

/** A word of a command line as systemd reads it (systemd.service(5), "Command lines"): quoted when it has blanks, quotes, `\` or `%`/`$`. */
function unitWord(word: string): string {
  const escaped = word.replace(/%/g, '%%').replace(/\$/g, '$$$$');
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(escaped) ? escaped : `"${escaped.replace(/(["\\])/g, '\\$1')}"`;
}

/**
 * The systemd unit of `relay365 serve`. Each setting's reason is in the comment above it; docs/operations.md
 * walks through them. `packaging/systemd/relay365.service` is this with the defaults of a global npm install.
 */
export function systemdUnit(o: SystemdUnitOptions): string {
  const run = (...args: string[]): string => [...o.exec, ...args].map(unitWord).join(' ');
  const lines = [
    '# relay365 as a systemd service (docs/operations.md, "A hardened service on Debian or Ubuntu").',
    '# Made by `relay365 service print systemd`; settings explained in the comments and in docs/operations.md.',
    '[Unit]',
    'Description=relay365: SMTP and HTTP relay that sends through Microsoft 365 with OAuth2',
    `Documentation=file:${o.documentation}`,
    'After=network-online.target',
    'Wants=network-online.target',
    '',
    '[Service]',
    '# Node cannot send sd_notify\'s datagram to $NOTIFY_SOCKET without a native module, so not Type=notify:',
    '# Type=exec (systemd.service(5)) marks the start failed if the program cannot be executed, and the',
    '# unit stays "activating" until ExecStartPost has seen /healthz answer 200 (or the SMTP port accept).',
    'Type=exec',
    `ExecStart=${run('serve', '--config', o.configFile)}`,
    `ExecStartPost=${run('service', 'ready', '--config', o.configFile, '--timeout', '60')}`,
    '# SIGHUP re-reads the config (mailboxes, users, allowlist, limits, webhooks, certificates); a config',
    '# that fails its checks is refused and the running one kept.',
    'ExecReload=/bin/kill -HUP $MAINPID',
    '# The graceful stop finishes SMTP transactions and sends in flight; accepted messages are on disk.',
    'KillSignal=SIGTERM',
    'TimeoutStartSec=90',
    'TimeoutStopSec=90',
    'Restart=on-failure',
    'RestartSec=5',
    '# Secrets the config names as env:NAME (RELAY365_CLIENT_SECRET, RELAY365_SECRET_KEY): mode 0600, root\'s.',
    'EnvironmentFile=-/etc/relay365/relay365.env',
    'Environment=NODE_ENV=production',
    '# Logs: JSON lines on stderr, the start-up summary on stdout; both go to the journal.',
    'StandardOutput=journal',
    'StandardError=journal',
    'SyslogIdentifier=relay365',
    ...(o.user === undefined ? ['DynamicUser=yes'] : [`User=${o.user}`, `Group=${o.user}`]),
    '# /var/lib/relay365, owned by the service\'s user, mode 0700; relay365 uses it as dataDir when the',
    '# config sets none ($STATE_DIRECTORY).',
    'StateDirectory=relay365',
    'StateDirectoryMode=0700',
    'UMask=0077',
    '# SMTP sessions (smtp.maxConnections, default 500) and HTTP connections (http.maxConnections, 1024).',
    'LimitNOFILE=65536',
    ...o.readWritePaths.map((p) => `ReadWritePaths=${unitWord(p)}`),
    '# Hardening (systemd.exec(5)): the whole file system read-only but the state directory, no home',
    '# folders, a private /tmp and /dev, no privilege gain, only IP and local sockets, the system calls a',
    '# service needs (a refused one fails with EPERM rather than killing the process). No',
    '# MemoryDenyWriteExecute=: V8\'s JIT compiler needs memory that is writable and executable.',
    'NoNewPrivileges=yes',
    'ProtectSystem=strict',
    'ProtectHome=yes',
    'PrivateTmp=yes',
    'PrivateDevices=yes',
    'ProtectKernelTunables=yes',
    'ProtectKernelModules=yes',
    'ProtectKernelLogs=yes',
    'ProtectControlGroups=yes',
    'ProtectClock=yes',
    'ProtectHostname=yes',
    'ProtectProc=invisible',
    'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX',
    'RestrictNamespaces=yes',
    'RestrictRealtime=yes',
    'RestrictSUIDSGID=yes',
    'LockPersonality=yes',
    'RemoveIPC=yes',
    'SystemCallArchitectures=native',
    'SystemCallFilter=@system-service',
    'SystemCallErrorNumber=EPERM',
    '# No capability at all, unless a listener is on a port below 1024 (25, 465, 587): then that one only.',
    ...(o.bindsLowPorts ? ['CapabilityBoundingSet=CAP_NET_BIND_SERVICE', 'AmbientCapabilities=CAP_NET_BIND_SERVICE'] : ['CapabilityBoundingSet=', 'AmbientCapabilities=']),
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ];
  return lines.join('\n');
}

/** Whether `config` has a listener on a privileged port (below 1024; 0 is "any free port"). */
export function bindsLowPorts(config: Config): boolean {
  const low = (port: number): boolean => port > 0 && port < 1024;
  return (config.smtp.enabled && config.smtp.listeners.some((l) => low(l.port))) || (config.http.enabled && low(config.http.port));
}

/** The built CLI this process runs (`dist/cli/main.js`, symbolic links resolved). */
function thisCli(): string {
  return realpathSync(fileURLToPath(new URL('../main.js', import.meta.url)));
}

/** The installed package's docs/operations.md. */
function thisDocs(): string {
  return fileURLToPath(new URL('../../../docs/operations.md', import.meta.url));
}

/**
 * `packaging/systemd/relay365.service`: the unit for a global npm install with Debian's Node.js (npm's
 * prefix `/usr/local`), a `relay365` user and the config in `/etc/relay365`.
 */
export const PACKAGED_UNIT: SystemdUnitOptions = {
  exec: ['/usr/local/bin/relay365'],
  configFile: '/etc/relay365/relay365.yaml',
  user: 'relay365',
  bindsLowPorts: false,
  documentation: '/usr/local/lib/node_modules/relay365/docs/operations.md',
  readWritePaths: [],
};

/** An address to reach a listener bound to `host` from this machine: the wildcard addresses mean loopback. */
function reachable(host: string): string {
  if (host === '' || host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '::1';
  return host;
}

/** The check `service ready` makes, as its `--json` shows it. */
export type ReadyProbe = { kind: 'http'; url: string } | { kind: 'smtp'; host: string; port: number } | { kind: 'none'; why: string };

/** What tells that the relay serves: `/healthz` when the HTTP front door is on, else the first SMTP listener accepting. */
export function readyProbe(config: Config): ReadyProbe {
  if (config.http.enabled && config.http.port !== 0) {
    const host = reachable(config.http.host);
    return { kind: 'http', url: `http://${host.includes(':') ? `[${host}]` : host}:${config.http.port}/healthz` };
  }
  const listener = config.smtp.enabled ? config.smtp.listeners.find((l) => l.port !== 0) : undefined;
  if (listener) return { kind: 'smtp', host: reachable(listener.host), port: listener.port };
  return { kind: 'none', why: 'no HTTP front door and no SMTP listener on a fixed port' };
}

async function probeOnce(probe: ReadyProbe): Promise<boolean> {
  if (probe.kind === 'none') return true;
  if (probe.kind === 'http') {
    try {
      const res = await fetch(probe.url, { signal: AbortSignal.timeout(2000) });
      await res.body?.cancel();
      return res.status === 200;
    } catch {
      return false;
    }
  }
  return new Promise((done) => {
    const socket = connect({ host: probe.host, port: probe.port, timeout: 2000 });
    const end = (ok: boolean): void => {
      socket.destroy();
      done(ok);
    };
    socket.once('connect', () => end(true));
    socket.once('error', () => end(false));
    socket.once('timeout', () => end(false));
  });
}

async function loadFor(flags: { config?: string }, env: NodeJS.ProcessEnv): Promise<{ config: Readonly<Config>; path: string | undefined }> {
  const { loadConfig } = await import('../../config/load.js');
  const path = configPath(flags.config, process.env, { sandboxDemo: false });
  return { config: await loadConfig(path === undefined ? { env } : { path, env }), path };
}

export function serviceCommand(): Command {
  const service = new Command('service').description('Run relay365 as a service: print a systemd unit with this machine\'s paths, check readiness');

  service
    .command('print')
    .description('Print a service definition (systemd) with the paths of this install and config')
    .addArgument(new Argument('<kind>', 'service manager (Windows: docs/operations.md, WinSW or NSSM)').choices(['systemd']))
    .option('-c, --config <file>', 'the config file the service reads (made absolute)', '/etc/relay365/relay365.yaml')
    .option('--user <name>', 'dedicated system user (and group) the service runs as', 'relay365')
    .option('--dynamic-user', 'DynamicUser=yes instead of a dedicated user (the config must then be readable by any user: keep secrets in LoadCredential= or env:)')
    .option('--node <path>', 'the Node.js binary (default: the one running this command)')
    .option('--cli <path>', "relay365's dist/cli/main.js (default: the one running this command)")
    .addHelpText(
      'after',
      `
Reads the config (when it exists) for what the unit must allow: a listener on a port below 1024 gets
CAP_NET_BIND_SERVICE and no other capability; a dataDir outside /var/lib/relay365 (systemd's
StateDirectory, the default dataDir under systemd) gets ReadWritePaths=. Install it with:
  sudo relay365 service print systemd --config /etc/relay365/relay365.yaml | sudo tee /etc/systemd/system/relay365.service
  sudo systemctl daemon-reload && sudo systemctl enable --now relay365`,
    )
    .action(async (_kind: string, flags: { config: string; user: string; dynamicUser?: boolean; node?: string; cli?: string }) => {
      const configFile = resolve(flags.config);
      let lowPorts = false;
      const readWritePaths: string[] = [];
      if (existsSync(configFile)) {
        // The environment the service will have: StateDirectory= sets STATE_DIRECTORY.
        const { config } = await loadFor({ config: configFile }, { STATE_DIRECTORY: SYSTEMD_STATE_DIR });
        lowPorts = bindsLowPorts(config);
        const dataDir = resolve(config.dataDir);
        if (dataDir !== SYSTEMD_STATE_DIR) readWritePaths.push(dataDir);
      } else {
        console.error(`relay365: ${configFile} does not exist yet; the unit assumes no listener below port 1024 and dataDir ${SYSTEMD_STATE_DIR}.`);
      }
      process.stdout.write(
        systemdUnit({
          exec: [flags.node ?? process.execPath, flags.cli ?? thisCli()],
          configFile,
          user: flags.dynamicUser ? undefined : flags.user,
          bindsLowPorts: lowPorts,
          documentation: thisDocs(),
          readWritePaths,
        }),
      );
    });

  service
    .command('ready')
    .description('Wait until the relay serves: GET /healthz answers 200 (or the first SMTP listener accepts); systemd runs it as ExecStartPost')
    .option('-c, --config <file>', 'config file (default: $RELAY365_CONFIG, else ./relay365.yaml when present)')
    .option('--timeout <seconds>', 'give up after this long', '60')
    .option('--json', 'print the result as JSON')
    .action(async (flags: { config?: string; timeout: string; json?: boolean }) => {
      const seconds = Number(flags.timeout);
      if (!Number.isFinite(seconds) || seconds <= 0) {
        const { Relay365Error } = await import('../../errors.js');
        throw new Relay365Error('R365_CLI_OPTION_INVALID', `--timeout must be a positive number of seconds (got ${flags.timeout}).`);
      }
      const { config } = await loadFor(flags, process.env);
      const probe = readyProbe(config);
      const started = Date.now();
      const what = probe.kind === 'http' ? probe.url : probe.kind === 'smtp' ? `SMTP ${probe.host}:${probe.port}` : probe.why;
      for (;;) {
        if (await probeOnce(probe)) {
          const ms = Date.now() - started;
          console.log(flags.json ? JSON.stringify({ ok: true, probe, ms }) : `relay365 ready: ${what} (${ms} ms)`);
          return;
        }
        if (Date.now() - started >= seconds * 1000) {
          const message = `relay365 not ready after ${seconds} s: ${what} did not answer. Its log says why (journalctl -u relay365).`;
          if (flags.json) console.log(JSON.stringify({ ok: false, probe, error: { message } }));
          else console.error(message);
          process.exitCode = 1;
          return;
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    });

  return service;
}
