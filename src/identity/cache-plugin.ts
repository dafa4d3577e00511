import type { ICachePlugin, TokenCacheContext } from '@azure/msal-node';
import type { TokenCacheStore } from './cache-store.js';

/**
 * MSAL's persistence hook: before each cache access the serialized cache is loaded from the store, and
 * after an access that changed it (a new token, a rotated refresh token) it is written back.
 */
export function createCachePlugin(store: TokenCacheStore, key: string): ICachePlugin {
  return {
    async beforeCacheAccess(context: TokenCacheContext): Promise<void> {
      const data = await store.read(key);
      if (data !== undefined) context.tokenCache.deserialize(data);
    },
    async afterCacheAccess(context: TokenCacheContext): Promise<void> {
      if (context.cacheHasChanged) await store.write(key, context.tokenCache.serialize());
    },
  };
}
