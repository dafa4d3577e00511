import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { configSchema } from '../../src/config/index.js';

interface JsonSchemaNode {
  properties?: Record<string, JsonSchemaNode>;
  items?: JsonSchemaNode;
  anyOf?: JsonSchemaNode[];
  oneOf?: JsonSchemaNode[];
  allOf?: JsonSchemaNode[];
}

/** Every field of the config schema as a dotted path (`smtp.users[].name`). */
function schemaPaths(): Set<string> {
  const out = new Set<string>();
  const walk = (node: JsonSchemaNode | undefined, path: string): void => {
    if (!node) return;
    for (const [key, child] of Object.entries(node.properties ?? {})) {
      const p = path ? `${path}.${key}` : key;
      out.add(p);
      walk(child, p);
    }
    if (node.items) walk(node.items, `${path}[]`);
    for (const list of [node.anyOf, node.oneOf, node.allOf]) for (const n of list ?? []) walk(n, path);
  };
  walk(z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchemaNode, '');
  return out;
}

describe('docs/configuration.md', () => {
  it('documents every config field and no field that does not exist', async () => {
    const doc = await readFile(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
    const documented = new Set([...doc.matchAll(/^\| `([A-Za-z[\].]+)` \|/gm)].map((m) => m[1]!));
    // Per-mailbox auth overrides mirror `auth.*` field for field and are documented once, with it.
    const required = [...schemaPaths()].filter((p) => !p.startsWith('mailboxes[].auth.'));
    assert.deepEqual(
      required.filter((p) => !documented.has(p)),
      [],
      'fields missing from docs/configuration.md',
    );
    assert.deepEqual(
      [...documented].filter((p) => !schemaPaths().has(p)),
      [],
      'docs/configuration.md documents fields that do not exist',
    );
  });
});
