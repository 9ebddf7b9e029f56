import { CountersignClient } from '@countersign/client';

/**
 * The API key lives in sessionStorage only: it is gone when the tab closes,
 * is never written to localStorage or a cookie, and is sent only to the
 * origin that served the console.
 */
const KEY = 'countersign.apiKey';

export function storedKey(): string | null {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function storeKey(key: string): void {
  sessionStorage.setItem(KEY, key);
}

export function forgetKey(): void {
  sessionStorage.removeItem(KEY);
}

/** Same-origin client: the console is served by the api it talks to. */
export const clientFor = (key: string): CountersignClient =>
  new CountersignClient({ baseUrl: '', apiKey: key, timeoutMs: 20_000 });
