// The Hub token (downloads of gated or private repos, uploads), found where huggingface_hub looks for it: HF_TOKEN (and its legacy
// name HUGGING_FACE_HUB_TOKEN), else the token file `huggingface-cli
// login` writes: $HF_TOKEN_PATH, else $HF_HOME/token, else ~/.cache/huggingface/token.
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';

export interface HubToken {
  token: string;
  /** Where it came from, for messages ("HF_TOKEN", or the file's path); never the token itself. */
  source: string;
}

/** The token file's path, as huggingface_hub computes it. */
export function hubTokenPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_TOKEN_PATH) return env.HF_TOKEN_PATH;
  const home = env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'huggingface');
  return join(home, 'token');
}

/** The token, or undefined when none is set (empty values count as unset, as huggingface_hub does). */
export function findHubToken(env: NodeJS.ProcessEnv = process.env): HubToken | undefined {
  for (const name of ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN'] as const) {
    const v = env[name]?.trim();
    if (v) return { token: v, source: name };
  }
  const file = hubTokenPath(env);
  if (!existsSync(file)) return undefined;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UserError(`cannot read the Hub token file ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const token = text.trim();
  return token ? { token, source: file } : undefined;
}

/** The token a write needs; a missing or malformed one is a one-line error saying where we looked. */
export function requireHubToken(env: NodeJS.ProcessEnv = process.env): HubToken {
  const found = findHubToken(env);
  if (!found) {
    throw new UserError(`no Hugging Face token: set HF_TOKEN, or run 'huggingface-cli login' (looked in HF_TOKEN, HUGGING_FACE_HUB_TOKEN and ${hubTokenPath(env)}); ` +
      'the token needs write access (https://huggingface.co/settings/tokens)');
  }
  // @huggingface/hub refuses any other token with a bare TypeError; say it here, naming where it came from
  if (!found.token.startsWith('hf_')) throw new UserError(`the Hugging Face token from ${found.source} does not start with 'hf_': not a user access token`);
  return found;
}
