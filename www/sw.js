// dumdum service worker: keeps the app shell so the page opens offline.
//
// Served at ./sw.js (not hashed, `Cache-Control: no-cache`), registered by
// the boot script `cargo xtask dist` writes; its scope is the page's folder.
//
// - The page (navigations, ./ and ./index.html): network first, so a new
//   deploy is picked up at once; the saved copy when the network or the
//   bridge fails. Each fresh copy is saved, and the hashed files it no
//   longer names are dropped from the cache.
// - Files named by content hash (dumdum-<16 hex>_bg.wasm, styles-<16 hex>.css,
//   ...): cache first; they never change under their name.
// - The other shell files (manifest, icons): network first, saved copy
//   offline.
// - Never touched: the WebSocket (ws), the API (api/...), metrics, healthz,
//   other origins and anything but GET.

const CACHE = 'dumdum-shell-v1';
const HASHED = /-[0-9a-f]{16}(_bg)?\.[a-z0-9]+$/;
const NEVER = /^(ws|metrics|healthz|sw\.js)$|^api\//;

const scope = new URL(self.registration.scope);
const shellUrl = scope.href; // the page: ./ (index.html)

/** The path of `url` below the scope ('' for the page), or null outside. */
function below(url) {
  if (url.origin !== scope.origin || !url.pathname.startsWith(scope.pathname)) {
    return null;
  }
  return url.pathname.slice(scope.pathname.length);
}

/** The files the page `html` loads (href/src of ./-relative names), with
 *  the manifest and the favicon the page swaps in while mentions are unseen. */
function shellFiles(html) {
  const files = new Set(['manifest.webmanifest', 'icon-alert.svg']);
  for (const m of html.matchAll(/\b(?:href|src)="(?:\.\/)?([A-Za-z0-9._-]+)"/g)) {
    files.add(m[1]);
  }
  return [...files].map((f) => new URL(f, scope).href);
}

/** Saves `html` (a fresh page) and its files; drops hashed files it no longer names. */
async function saveShell(cache, resp) {
  const html = await resp.clone().text();
  await cache.put(shellUrl, resp);
  const wanted = new Set(shellFiles(html));
  for (const req of await cache.keys()) {
    const url = new URL(req.url);
    if (HASHED.test(url.pathname) && !wanted.has(url.href)) {
      await cache.delete(req);
    }
  }
  return [...wanted];
}

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    const resp = await fetch(shellUrl, { cache: 'no-cache' });
    if (!resp.ok) {
      throw new Error(`dumdum: the page answered ${resp.status}`);
    }
    const files = await saveShell(cache, resp);
    // One file missing (an icon) must not leave the page without a shell.
    // Hashed files may come from the HTTP cache (the page has just loaded
    // them, immutable): no second download.
    await Promise.all(files.map(async (f) => {
      try {
        const fresh = HASHED.test(new URL(f).pathname) ? {} : { cache: 'no-cache' };
        const r = await fetch(f, fresh);
        if (r.ok) await cache.put(f, r);
      } catch (e) {
        console.warn('dumdum: not cached for offline use:', f, e);
      }
    }));
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) {
      if (key.startsWith('dumdum-') && key !== CACHE) {
        await caches.delete(key);
      }
    }
    await self.clients.claim();
  })());
});

async function page(event) {
  const request = event.request;
  const cache = await caches.open(CACHE);
  try {
    const resp = await fetch(request);
    // A proxy's 502/503/504 while the bridge is down: the saved copy.
    if (resp.status >= 500) throw new Error(`HTTP ${resp.status}`);
    // Saved while the page already loads.
    if (resp.ok) event.waitUntil(saveShell(cache, resp.clone()));
    return resp;
  } catch (e) {
    const saved = await cache.match(shellUrl);
    if (saved) return saved;
    throw e;
  }
}

async function hashed(request) {
  const cache = await caches.open(CACHE);
  const saved = await cache.match(request);
  if (saved) return saved;
  const resp = await fetch(request);
  if (resp.ok) await cache.put(request, resp.clone());
  return resp;
}

async function other(request) {
  const cache = await caches.open(CACHE);
  try {
    const resp = await fetch(request);
    if (resp.ok && (await cache.match(request))) await cache.put(request, resp.clone());
    return resp;
  } catch (e) {
    const saved = await cache.match(request);
    if (saved) return saved;
    throw e;
  }
}

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  const path = below(url);
  if (path === null || NEVER.test(path)) return;
  if (request.mode === 'navigate' || path === '' || path === 'index.html') {
    if (path === '' || path === 'index.html') event.respondWith(page(event));
    return;
  } else if (HASHED.test(path)) {
    event.respondWith(hashed(request));
  } else {
    event.respondWith(other(request));
  }
});
