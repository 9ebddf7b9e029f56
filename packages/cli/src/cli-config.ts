import { chmod, mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

/**
 * Where the approver commands find the API and the key: COUNTERSIGN_URL and
 * COUNTERSIGN_API_KEY win, then the file `countersign login` wrote
 * (~/.config/countersign/config.json, or under $XDG_CONFIG_HOME). The file
 * holds a secret, so it is created 0600 in a 0700 directory, and a file that
 * others can read is reported, as ssh does.
 */
export interface StoredConfig {
  url: string;
  api_key: string;
  principal?: { id: string; name: string; role: string };
  saved_at?: string;
}

export interface Resolved {
  url: string | null;
  apiKey: string | null;
  /** Where each value came from, for `whoami` and error hints. */
  source: { url: 'env' | 'file' | null; apiKey: 'env' | 'file' | null };
  path: string;
  warnings: string[];
}

export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME?.trim() ? env.XDG_CONFIG_HOME : join(env.HOME ?? homedir(), '.config');
  return join(base, 'countersign', 'config.json');
}

export async function readStored(path: string): Promise<{ config: StoredConfig | null; warnings: string[] }> {
  let text: string;
  const warnings: string[] = [];
  try {
    text = await readFile(path, 'utf8');
    const mode = (await stat(path)).mode & 0o777;
    if (mode & 0o077) {
      warnings.push(
        `${path} is readable by other users (mode ${mode.toString(8).padStart(4, '0')}); run: chmod 600 ${path}`,
      );
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { config: null, warnings };
    throw err;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`${path} is not valid JSON; run 'countersign login' again`);
  }
  const c = parsed as Partial<StoredConfig>;
  if (typeof c.url !== 'string' || typeof c.api_key !== 'string') {
    throw new Error(`${path} lacks "url" or "api_key"; run 'countersign login' again`);
  }
  return { config: c as StoredConfig, warnings };
}

export async function resolveConfig(env: NodeJS.ProcessEnv = process.env): Promise<Resolved> {
  const path = configPath(env);
  const { config, warnings } = await readStored(path);
  const envUrl = env.COUNTERSIGN_URL?.trim() || null;
  const envKey = env.COUNTERSIGN_API_KEY?.trim() || null;
  return {
    url: envUrl ?? config?.url ?? null,
    apiKey: envKey ?? config?.api_key ?? null,
    source: {
      url: envUrl ? 'env' : config ? 'file' : null,
      apiKey: envKey ? 'env' : config ? 'file' : null,
    },
    path,
    warnings,
  };
}

/** Writes the file with 0600 from the first byte: never briefly readable by others. */
export async function writeStored(path: string, config: StoredConfig): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(`${JSON.stringify(config, null, 2)}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  // Re-assert the mode in case the file pre-existed with a wider one.
  await chmod(tmp, 0o600);
  await rename(tmp, path);
}

export async function removeStored(path: string): Promise<boolean> {
  try {
    await rm(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
