// What an open console page costs the daemon (docs/performance.md "The console"): ignisd's CPU
// time (utime + stime from /proc/PID/stat) over SECONDS with no page open, then with a function's
// page open in headless chromium (charts each second, facts and recent invocations every 3 s, the
// follow-mode log), then with the overview open. Not a test: run it by hand, as root, after
// scripts/build-images build/test-state:  node tests/browser/page-cost.mjs [SECONDS]
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';

const SRC = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BUILD = process.env.IGNIS_BUILD_DIR || join(SRC, 'build');
const SECONDS = Number(process.argv[2] || 60);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const state = mkdtempSync(join(tmpdir(), 'ignis-pagecost.'));
const d = spawn(join(BUILD, 'orchestrator', 'ignisd'), ['--listen', '127.0.0.1:0', '--state-dir', join(state, 's'),
  '--images-dir', join(BUILD, 'test-state', 'images')], { stdio: ['ignore', 'ignore', 'pipe'] });
let log = '';
d.stderr.on('data', (b) => { log += b; });
let port;
for (let i = 0; i < 200 && !port; i++) { port = (log.match(/msg="ignisd started".* listen=[^ ]*:(\d+) /) || [])[1]; await sleep(50); }
const url = `http://127.0.0.1:${port}`;
const token = readFileSync(join(state, 's', 'admin.token'), 'utf8').trim();
for (const ex of ['hello-python', 'hello-node', 'sleep'])
  execFileSync(join(BUILD, 'orchestrator', 'ignis'), ['--server', url, '--token', token, 'push', join(SRC, 'runtime-images', 'examples', ex)]);
const tick = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
const cpu = () => { const f = readFileSync(`/proc/${d.pid}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) / tick; };
async function measure(what) {
  await sleep(5000);
  const c0 = cpu(), t0 = Date.now();
  await sleep(SECONDS * 1000);
  const used = cpu() - c0, wall = (Date.now() - t0) / 1000;
  console.log(`${what}: ${used.toFixed(2)} s CPU in ${wall.toFixed(0)} s = ${(100 * used / wall).toFixed(2)}% of a core`);
}
const profile = mkdtempSync(join(tmpdir(), 'ignis-chromium.'));
try {
  await measure('no page open');
  const browser = await puppeteer.launch({ executablePath: '/usr/bin/chromium', headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', `--user-data-dir=${profile}`] });
  const page = await browser.newPage();
  await page.goto(`${url}/ui/`);
  await page.evaluate((t) => sessionStorage.setItem('ignis.token', t), token);
  await page.goto(`${url}/ui/#/fn/sleep`);
  await page.reload();
  await measure('a function page open');
  await page.goto(`${url}/ui/#/`);
  await measure('the overview open');
  await browser.close();
} finally {
  d.kill('SIGTERM');
  await new Promise((r) => d.on('exit', r));
  rmSync(state, { recursive: true, force: true });
  rmSync(profile, { recursive: true, force: true });
}
