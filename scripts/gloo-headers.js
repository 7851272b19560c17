// Finds gloo's C++ headers for the addon's c10d support (native/src/dist.cc). libtorch contains
// gloo's code but the pip wheels ship none of its headers, which ProcessGroupGloo.hpp includes. The
// headers are only read at compile time (nothing of gloo is linked but what libtorch already has).
//
// In order: DPO_GLOO_INCLUDE (a folder holding gloo/), the system's /usr/include/gloo when it is
// new enough for the libtorch's ProcessGroupGloo.hpp, a copy fetched earlier into native/deps/,
// else Debian's libgloo-dev package (trixie's, pinned by SHA-256) downloaded from the Debian
// archive and unpacked there. Returns null (with the reason) when none works: the addon then builds
// without multi-process training and says so when asked for it.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const depsDir = join(root, 'native', 'deps', 'gloo');
const PACKAGE = {
  path: 'pool/main/g/gloo/libgloo-dev_0.0~git20231202.5354032-3+b2_amd64.deb',
  sha256: '5fd43a7c594ffa4baccf00ba797c215d4485ab617058fd04b69980dcbddc7cf2',
};

/** Whether the headers in `include` declare what the libtorch's ProcessGroupGloo.hpp overrides. */
function compatible(include, torchInclude) {
  const store = join(include, 'gloo', 'rendezvous', 'store.h');
  if (!existsSync(store)) return false;
  const pg = join(torchInclude, 'torch', 'csrc', 'distributed', 'c10d', 'ProcessGroupGloo.hpp');
  if (!existsSync(pg)) return false;
  const needs = ['has_v2_support', 'multi_get', 'multi_set', 'append'].filter((m) => readFileSync(pg, 'utf8').includes(`${m}(`));
  const have = readFileSync(store, 'utf8');
  return needs.every((m) => have.includes(`${m}(`));
}

async function download(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(120_000) });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return Buffer.from(await res.arrayBuffer());
}

/** @returns {Promise<{ include: string | null, reason: string }>} */
export async function glooHeaders(torchInclude) {
  if (process.env.DPO_GLOO_INCLUDE) {
    const dir = process.env.DPO_GLOO_INCLUDE;
    if (!compatible(dir, torchInclude)) return { include: null, reason: `DPO_GLOO_INCLUDE=${dir} holds no gloo headers matching this libtorch` };
    return { include: dir, reason: 'DPO_GLOO_INCLUDE' };
  }
  if (compatible('/usr/include', torchInclude)) return { include: '/usr/include', reason: 'the system (/usr/include/gloo)' };
  const cached = join(depsDir, 'include');
  if (compatible(cached, torchInclude)) return { include: cached, reason: 'native/deps/gloo' };
  if (process.env.DPO_NO_DOWNLOAD === '1') return { include: null, reason: 'DPO_NO_DOWNLOAD=1 and no gloo headers found' };
  const mirror = (process.env.DPO_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian').replace(/\/$/, '');
  const url = `${mirror}/${PACKAGE.path}`;
  let tmp;
  try {
    const deb = await download(url);
    const sum = createHash('sha256').update(deb).digest('hex');
    if (sum !== PACKAGE.sha256) throw new Error(`${url}: SHA-256 ${sum}, expected ${PACKAGE.sha256}`);
    tmp = mkdtempSync(join(tmpdir(), 'dpo-gloo-'));
    writeFileSync(join(tmp, 'gloo.deb'), deb);
    const r = spawnSync('dpkg-deb', ['-x', join(tmp, 'gloo.deb'), join(tmp, 'root')], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`dpkg-deb -x failed: ${r.error?.message ?? r.stderr}`);
    rmSync(depsDir, { recursive: true, force: true });
    mkdirSync(cached, { recursive: true });
    cpSync(join(tmp, 'root', 'usr', 'include', 'gloo'), join(cached, 'gloo'), { recursive: true });
    cpSync(join(tmp, 'root', 'usr', 'share', 'doc', 'libgloo-dev', 'copyright'), join(depsDir, 'copyright'));
    writeFileSync(join(depsDir, 'SOURCE'), `${url}\nsha256 ${PACKAGE.sha256}\nheaders only, for compiling against libtorch's ProcessGroupGloo\n`);
  } catch (e) {
    return { include: null, reason: `could not fetch gloo's headers (${e instanceof Error ? e.message : e})` };
  } finally {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }
  if (!compatible(cached, torchInclude)) return { include: null, reason: `the headers of ${url} do not match this libtorch's ProcessGroupGloo.hpp` };
  return { include: cached, reason: `Debian's libgloo-dev (${url})` };
}
