// The operators' console in a real browser: Debian's chromium (headless) driven by
// puppeteer-core, against a real ignisd this test starts (a temp state dir, a free port, the test
// images). Meson runs it in the integration suite (tests/browser/meson.build); it exits 77 (skip)
// with a reason where no browser can run, 1 instead under IGNIS_MUST_WORK=1.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, cpSync, writeFileSync, readFileSync, mkdirSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const env = process.env;
const SRC = env.IGNIS_SOURCE_DIR || join(here, '..', '..');
const BUILD = env.IGNIS_BUILD_DIR || join(SRC, 'build');
const IGNISD = env.IGNISD || join(BUILD, 'orchestrator', 'ignisd');
const CLI = env.IGNIS_CLI || join(BUILD, 'orchestrator', 'ignis');
const BENCH = env.IGNIS_BENCH || join(BUILD, 'orchestrator', 'ignis-bench');
const IMAGES = env.IGNIS_IMAGES_DIR || join(BUILD, 'test-state', 'images');
const CHROMIUM = env.IGNIS_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = join(BUILD, 'test-artifacts', 'browser');
const HOSTILE = '<script>window.__pwned=1</script>"><img src=x onerror="window.__pwned=2">';

function skip(why) {
  const fail = env.IGNIS_MUST_WORK === '1';
  console.error(`${fail ? 'FAIL (IGNIS_MUST_WORK=1 forbids skipping)' : 'SKIP'}: ${why}`);
  process.exit(fail ? 1 : 77);
}

if (process.getuid() !== 0) skip('needs root (the daemon runs real containers)');
if (!existsSync(CHROMIUM)) skip(`no browser at ${CHROMIUM} (scripts/deps installs Debian's chromium)`);
if (!existsSync(join(IMAGES, 'python3'))) skip(`no runtime images in ${IMAGES} (scripts/build-images)`);
let puppeteer;
try {
  puppeteer = (await import('puppeteer-core')).default;
} catch (e) {
  skip('puppeteer-core is not installed (scripts/test runs npm ci in tests/browser)');
}

const cleanups = [];
let failed = 0;
function check(cond, what) {
  if (cond) {
    console.log(`ok - ${what}`);
  } else {
    failed++;
    console.log(`not ok - ${what}`);
  }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- the daemon ----

const state = mkdtempSync(join(tmpdir(), 'ignis-browser.'));
cleanups.push(() => rmSync(state, { recursive: true, force: true }));
const daemonLog = [];
const daemon = spawn(IGNISD, ['--listen', '127.0.0.1:0', '--state-dir', join(state, 'state'),
  '--images-dir', IMAGES, '--rate-limit', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
daemon.stderr.on('data', (b) => daemonLog.push(b.toString()));
const daemonExit = new Promise((resolve) => daemon.on('exit', (code, sig) => resolve({ code, sig })));
let port = null;
for (let i = 0; i < 200 && !port; i++) {
  const m = daemonLog.join('').match(/msg="ignisd started".* listen=[^ ]*:(\d+) /);
  if (m) port = m[1];
  else await sleep(50);
}
async function stopDaemon() {
  if (daemon.exitCode !== null || daemon.signalCode) return;
  daemon.kill('SIGTERM');
  const { code, sig } = await Promise.race([daemonExit, sleep(20000).then(() => ({ code: 'timeout' }))]);
  if (code === 'timeout') daemon.kill('SIGKILL');
  check(code === 0, `ignisd stopped with exit 0 (got ${code ?? sig})`);
}
cleanups.unshift(stopDaemon);

async function finish() {
  for (const c of cleanups) {
    try { await c(); } catch (e) { console.error(e); failed++; }
  }
  // Nothing of this run is left behind: no process names its state dir.
  const left = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try { return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(state); } catch { return false; }
  });
  check(left.length === 0, `no process left behind (${left.join(' ')})`);
  if (failed) console.error(daemonLog.join('').split('\n').slice(-60).join('\n'));
  console.log(failed ? `${failed} check(s) failed` : 'all checks passed');
  process.exit(failed ? 1 : 0);
}

if (!port) {
  console.error(daemonLog.join(''));
  check(false, 'ignisd started');
  await finish();
}
const URL_ = `http://127.0.0.1:${port}`;
const adminToken = readFileSync(join(state, 'state', 'admin.token'), 'utf8').trim();
const cli = (...args) => execFileSync(CLI, ['--server', URL_, ...args],
  { env: Object.assign({}, env, { IGNIS_TOKEN: adminToken }), encoding: 'utf8' }).trim();

function pushExample(example, name, over = {}) {
  const dir = join(state, `fixture-${name}`);
  cpSync(join(SRC, 'runtime-images', 'examples', example), dir, { recursive: true });
  const m = JSON.parse(readFileSync(join(dir, 'function.json'), 'utf8'));
  writeFileSync(join(dir, 'function.json'), JSON.stringify(Object.assign(m, { name }, over)));
  cli('push', dir);
}

// ---- the browser ----

const profile = mkdtempSync(join(tmpdir(), 'ignis-chromium.'));
cleanups.push(() => rmSync(profile, { recursive: true, force: true }));
let browser;
try {
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', `--user-data-dir=${profile}`],
  });
} catch (e) {
  for (const c of cleanups) await c().catch(() => {});
  skip(`chromium does not start here: ${e.message.split('\n')[0]}`);
}
cleanups.unshift(() => browser.close());

const urlsSeen = [];
const cspViolations = [];
async function newPage() {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  page.on('request', (r) => urlsSeen.push(r.url()));
  page.on('console', (m) => { if (/Content.Security.Policy|Refused to/i.test(m.text())) cspViolations.push(m.text()); });
  return page;
}
async function signIn(page, token) {
  await page.goto(`${URL_}/ui/`, { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('#token', { visible: true });
  await page.type('#token', token);
  await page.click('#signin-form button');
}
const values = (page, sel) => page.$eval(sel, (e) => e.getAttribute('data-values').split(',').filter((x) => x !== '').map(Number)).catch(() => []);

// Is the PNG more than one colour? Decoded in a blank page's canvas.
async function distinctColours(png) {
  const p = await browser.newPage();
  const n = await p.evaluate(async (b64) => {
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const c = document.createElement('canvas');
    c.width = img.width; c.height = img.height;
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    const seen = new Set();
    for (let i = 0; i < d.length && seen.size < 1000; i += 4 * 7) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
    return seen.size;
  }, png.toString('base64'));
  await p.close();
  return n;
}

async function main() {
  pushExample('hello-python', 'hello-python');
  pushExample('hello-node', 'hello-node');
  // max_scale keeps a burst queued long enough for the one-second samples to see it.
  // A short idle timeout lets the test see the pool go back to zero after the burst.
  pushExample('sleep', 'sleep', { max_scale: 3, idle_timeout_s: 2 });
  // The hostile function: its environment, output and result carry markup.
  const hdir = join(state, 'fixture-hostile');
  mkdirSync(hdir);
  writeFileSync(join(hdir, 'function.json'), JSON.stringify({ name: 'hostile', runtime: 'python3',
    handler: 'app.handler', memory_mb: 128, timeout_ms: 5000, reuse: true, env: { NOTE: HOSTILE } }));
  writeFileSync(join(hdir, 'app.py'), 'import os\n\ndef handler(event, context):\n' +
    '    print(os.environ["NOTE"], flush=True)\n    return {"note": os.environ["NOTE"]}\n');
  cli('push', hdir);
  mkdirSync(ARTIFACTS, { recursive: true });

  // A wrong token: a clear sign-in error, nothing else shown.
  const page = await newPage();
  await signIn(page, 'ignis_0000000000000000_wrongwrongwrong');
  await page.waitForFunction(() => document.getElementById('signin-error').textContent.length > 0, { timeout: 10000 });
  const err = await page.$eval('#signin-error', (e) => e.textContent);
  check(/Sign-in failed/.test(err) && /refused/.test(err), `a wrong token shows a sign-in error ("${err}")`);
  check(await page.$eval('#page-overview', (e) => e.hidden), 'with a wrong token the overview stays hidden');

  // Sign in as admin: the example functions are listed, with sparklines.
  await signIn(page, adminToken);
  await page.waitForSelector('#functions tr[data-function="hello-python"]', { timeout: 15000 });
  const names = await page.$$eval('#functions tbody tr', (rows) => rows.map((r) => r.getAttribute('data-function')));
  check(['hello-node', 'hello-python', 'sleep', 'hostile'].every((n) => names.includes(n)), `the overview lists the functions (${names})`);
  check(await page.evaluate(() => sessionStorage.getItem('ignis.token') !== null && document.cookie === ''),
    'the token is in sessionStorage, no cookie is set');
  await page.waitForSelector('#host .card', { timeout: 10000 });
  check((await page.$eval('#host', (e) => e.textContent)).includes('cgroups'), 'the host facts from the doctor are shown');

  // The function page: invoke from the page, see the invocation with its billed ms, open its logs.
  await page.goto(`${URL_}/ui/#/fn/hello-python`, { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('#fn-invoke-box-go', { visible: true, timeout: 10000 });
  await page.click('#fn-invoke-box-go');
  await page.waitForSelector('.invoke-result [data-status]', { timeout: 30000 });
  const status = await page.$eval('.invoke-result [data-status]', (e) => e.getAttribute('data-status'));
  const headers = await page.$eval('.invoke-result pre.headers', (e) => e.textContent);
  check(status === '200', `the page's invocation answered 200 (${status})`);
  const id = (headers.match(/ignis-invocation-id: ([0-9a-f]+)/) || [])[1];
  const billedHeader = (headers.match(/ignis-billed-ms: (\d+)/) || [])[1];
  check(id && billedHeader, `the result shows its headers (id ${id}, billed ${billedHeader} ms)`);
  await page.waitForSelector(`#fn-recent tr[data-invocation="${id}"]`, { timeout: 20000 });
  const billed = await page.$eval(`#fn-recent tr[data-invocation="${id}"] td.billed`, (e) => e.textContent);
  check(billed === billedHeader, `the invocation appears in the recent list with its billed ms (${billed})`);
  await page.click(`#fn-recent tr[data-invocation="${id}"] button.open-logs`);
  await page.waitForFunction(() => document.getElementById('fn-inv-logs-text').textContent.includes('REPORT'), { timeout: 10000 });
  check(true, 'its logs open, with the REPORT line');
  await page.waitForFunction(() => document.getElementById('fn-log').textContent.includes('REPORT'), { timeout: 10000 });
  check(true, 'the follow-mode log tail shows it');

  // A burst: the containers chart rises and the queue chart moves within 5 s of samples.
  await page.goto(`${URL_}/ui/#/fn/sleep`, { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('#chart-containers polyline[data-name="ready"]', { timeout: 10000 });
  const burstStart = Math.floor(Date.now() / 1000);
  const bench = spawn(BENCH, ['-c', '12', '-t', '8', '-d', '{"ms":400}', `${URL_}/v1/functions/sleep/invoke`],
    { env: Object.assign({}, env, { IGNIS_TOKEN: adminToken }), stdio: 'ignore' });
  const benchDone = new Promise((r) => bench.on('exit', r));
  cleanups.unshift(() => { if (bench.exitCode === null) bench.kill('SIGKILL'); });
  let rose = false, moved = false, peak = 0;
  for (let i = 0; i < 40 && !(rose && moved); i++) {
    await sleep(500);
    const t = await page.$eval('#chart-containers svg', (e) => e.getAttribute('data-t').split(',').map(Number)).catch(() => []);
    const ready = await values(page, '#chart-containers polyline[data-name="ready"]');
    const busy = await values(page, '#chart-containers polyline[data-name="busy"]');
    const spawning = await values(page, '#chart-containers polyline[data-name="spawning"]');
    const queued = await values(page, '#chart-queue polyline[data-name="queued"]');
    const tq = await page.$eval('#chart-queue svg', (e) => e.getAttribute('data-t').split(',').map(Number)).catch(() => []);
    t.forEach((ts, j) => {
      if (ts < burstStart || ts > burstStart + 5) return;
      const c = (ready[j] || 0) + (busy[j] || 0) + (spawning[j] || 0);
      peak = Math.max(peak, c);
      if (c >= 2) rose = true;
    });
    tq.forEach((ts, j) => { if (ts >= burstStart && ts <= burstStart + 5 && queued[j] > 0) moved = true; });
  }
  check(rose, `the containers chart rose during the burst's first 5 s of samples (peak ${peak})`);
  check(moved, 'the queue chart moved during the burst\'s first 5 s of samples');
  await sleep(3500); /* the facts and the recent invocations refresh every 3 s */
  writeFileSync(join(ARTIFACTS, 'function.png'), await page.screenshot({ fullPage: true }));
  /* The top of the page, as docs/console.png shows it. */
  writeFileSync(join(ARTIFACTS, 'function-top.png'), await page.screenshot({ clip: { x: 0, y: 0, width: 1280, height: 820 } }));
  await page.goto(`${URL_}/ui/#/`, { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('#functions tr[data-function="sleep"] td.spark svg', { timeout: 15000 });
  await sleep(500);
  writeFileSync(join(ARTIFACTS, 'overview.png'), await page.screenshot({ fullPage: true }));
  await benchDone;
  for (const f of ['overview.png', 'function.png']) {
    const n = await distinctColours(readFileSync(join(ARTIFACTS, f)));
    check(n > 20, `${ARTIFACTS}/${f} is not blank (${n} colours)`);
  }

  // ... and back to zero once the burst is over and its containers idled past idle_timeout_s.
  await page.goto(`${URL_}/ui/#/fn/sleep`, { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('#chart-containers polyline[data-name="ready"]', { timeout: 10000 });
  let zero = false, last = -1;
  for (let i = 0; i < 60 && !zero; i++) {
    await sleep(500);
    const series = await Promise.all(['ready', 'busy', 'spawning'].map((n) => values(page, `#chart-containers polyline[data-name="${n}"]`)));
    if (series[0].length === 0) continue;
    last = series.reduce((sum, v) => sum + (v[v.length - 1] || 0), 0);
    zero = last === 0;
  }
  check(zero, `the containers chart came back to zero after the burst (last sample ${last})`);

  // Usage: the chart and the table.
  await page.goto(`${URL_}/ui/#/usage`, { waitUntil: 'domcontentloaded' });
  await page.waitForFunction(() => [...document.querySelectorAll('#usage-table td')].some((t) => t.textContent === 'sleep'), { timeout: 15000 });
  check(true, 'the usage page lists the functions that ran');

  // Hostile text stays text: the manifest, the output, the result, a name in the URL, a token's name.
  const hostileName = '<img/src=x/onerror=window.__pwned=3>';
  const hostileToken = cli('token', 'create', '--role', 'admin', '--name', hostileName);
  const hp = await newPage();
  await signIn(hp, hostileToken);
  await hp.waitForSelector('#functions tr[data-function="hostile"]', { timeout: 15000 });
  await hp.goto(`${URL_}/ui/#/fn/hostile`, { waitUntil: 'domcontentloaded' });
  await hp.waitForSelector('#fn-invoke-box-go', { visible: true, timeout: 10000 });
  await hp.click('#fn-invoke-box-go');
  await hp.waitForSelector('.invoke-result pre.body', { timeout: 30000 });
  await hp.waitForFunction((h) => document.getElementById('fn-log').textContent.includes(h), { timeout: 15000 }, HOSTILE);
  await hp.waitForFunction((h) => document.getElementById('fn-manifest').textContent.includes('onerror'), { timeout: 10000 }, HOSTILE);
  check((await hp.$eval('.invoke-result pre.body', (e) => e.textContent)).includes('onerror'), 'the hostile result is shown as text');
  check((await hp.$eval('#whoami', (e) => e.textContent)).includes(hostileName), 'the hostile token name is shown as text');
  await hp.goto(`${URL_}/ui/#/fn/${encodeURIComponent(HOSTILE)}`, { waitUntil: 'domcontentloaded' });
  await hp.waitForFunction(() => document.getElementById('fn-error').textContent.includes('No function'), { timeout: 10000 });
  check((await hp.$eval('#fn-title', (e) => e.textContent)) === HOSTILE, 'a hostile name in the URL is shown as text');
  const pwned = await hp.evaluate(() => [typeof window.__pwned, document.querySelectorAll('img').length,
    document.querySelectorAll('script').length]);
  check(pwned[0] === 'undefined' && pwned[1] === 0 && pwned[2] === 1, `no hostile script ran, no element was made (${pwned})`);

  // An invoker sees what it may: no function list, no usage, no tokens or audit; it may invoke.
  const invokerToken = cli('token', 'create', '--role', 'invoker', '--name', 'ci-invoker');
  const ip = await newPage();
  const invokerResponses = [];
  ip.on('response', (r) => invokerResponses.push([r.url(), r.status()]));
  await signIn(ip, invokerToken);
  await ip.waitForSelector('#invoke-any', { visible: true, timeout: 10000 });
  check(await ip.$eval('#nav-usage', (e) => e.hidden), 'an invoker gets no usage page');
  check(await ip.$eval('#functions', (e) => e.hidden), 'an invoker gets no function list');
  const text = await ip.evaluate(() => document.body.innerText);
  check(!text.includes(hostileName) && !text.includes('admin (admin)'), 'an invoker sees no other token');
  check(!invokerResponses.some(([u, s]) => /\/v1\/(tokens|audit|usage|functions$|series)/.test(u) && s === 200),
    'an invoker\'s page reads no tokens, audit, usage or function list');
  await ip.type('#invoke-any-name', 'hello-python');
  await ip.click('#invoke-any-box-go');
  await ip.waitForSelector('#invoke-any-box [data-status]', { timeout: 30000 });
  check((await ip.$eval('#invoke-any-box [data-status]', (e) => e.getAttribute('data-status'))) === '200', 'an invoker may invoke from the page');

  check(!urlsSeen.some((u) => [adminToken, hostileToken, invokerToken].some((t) => u.includes(t.split('_').pop()))),
    'no token ever appears in a URL');
  check(cspViolations.length === 0, `no Content-Security-Policy violation (${cspViolations.slice(0, 2)})`);
}

try {
  await main();
} catch (e) {
  console.error(e);
  failed++;
}
await finish();
