import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Config } from '../../src/config/index.js';
import { cloudEndpoints, scopesFor } from '../../src/identity/index.js';

/** The endpoints of a Microsoft cloud (the sandbox settings play no part in them). */
function endpoints(cloud: 'global' | 'usgov' | 'usgov-dod' | 'china') {
  return cloudEndpoints({ cloud, sandbox: {} as Config['sandbox'] });
}

describe('Microsoft clouds', () => {
  it("sends US Government DoD mail through DoD's own Exchange Online, outlook-dod.office365.us, with tokens for it", () => {
    // Microsoft Learn "Office 365 U.S. Government DoD endpoints" and "Microsoft Graph national cloud
    // deployments"; the token resource as microsoft/CSS-Exchange's Get-CloudServiceEndpoint.ps1 asks it.
    const dod = endpoints('usgov-dod');
    assert.equal(dod.smtpHost, 'outlook-dod.office365.us');
    assert.equal(dod.smtpPort, 587);
    assert.equal(dod.authorityHost, 'https://login.microsoftonline.us');
    assert.equal(dod.graphHost, 'https://dod-graph.microsoft.us');
    assert.deepEqual(scopesFor(dod, true), ['https://outlook-dod.office365.us/.default']);
    assert.deepEqual(scopesFor(dod, false), ['https://outlook-dod.office365.us/SMTP.Send', 'offline_access']);
    assert.deepEqual(scopesFor(dod, true, 'graph'), ['https://dod-graph.microsoft.us/.default']);
  });

  it('keeps GCC High on smtp.office365.us and outlook.office365.us, and the global cloud on smtp.office365.com', () => {
    const high = endpoints('usgov');
    assert.deepEqual([high.smtpHost, high.authorityHost, high.graphHost], ['smtp.office365.us', 'https://login.microsoftonline.us', 'https://graph.microsoft.us']);
    assert.deepEqual(scopesFor(high, true), ['https://outlook.office365.us/.default']);
    const global = endpoints('global');
    assert.deepEqual([global.smtpHost, global.authorityHost], ['smtp.office365.com', 'https://login.microsoftonline.com']);
    assert.deepEqual(scopesFor(global, true), ['https://outlook.office365.com/.default']);
    assert.deepEqual(scopesFor(global, false), ['https://outlook.office.com/SMTP.Send', 'offline_access']);
  });
});
