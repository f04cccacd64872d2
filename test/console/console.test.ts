/**
 * The web console in a real browser (Debian's Chromium, driven by playwright-core) against a
 * real node: sign in with a key file, decrypt in the page, upload from the page, the DPO's
 * review and erasure screens, the ledger explorer; and the key never leaves the page.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildConsole } from '../../scripts/build-console.ts';
import { pseudonym } from '../../services/protocol/pseudonym.ts';
import { signRequest } from '../../services/protocol/signing.ts';
import { bytes, ROOT, tempDir } from '../helpers.ts';
import { launchChromium } from '../servers/browser.ts';
import { served, startNode, type TestMember, type TestNode, treatment } from '../services/vault-fixture.ts';

const ARTIFACTS = join(ROOT, 'test-artifacts', 'console');
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

let node: TestNode;
let hospital: TestMember;
let clinic: TestMember;
let dpo: TestMember;
let browser: Browser;
const work = tempDir('medvault-console-');

beforeAll(async () => {
  await buildConsole();
  mkdirSync(ARTIFACTS, { recursive: true });
  node = await startNode();
  hospital = await node.addMember('hospital', 'uploader');
  clinic = await node.addMember('clinic', 'reader');
  dpo = await node.addMember('dpo', 'dpo');
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await node?.stop();
});

/** A fresh page signed in as `member`; every request it sends is kept in `sent`. */
async function signedIn(member: TestMember, sent: string[] = []): Promise<Page> {
  const page = await browser.newPage({ acceptDownloads: true });
  page.on('request', (r) =>
    sent.push(`${r.method()} ${r.url()}\n${JSON.stringify(r.headers())}\n${r.postData() ?? ''}`),
  );
  await page.goto(`${node.url}/console/`);
  await page.setInputFiles('#key-file', member.keyFile);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect.poll(() => page.locator('#who').textContent(), POLL).toContain(member.name);
  return page;
}

const statusOf = (page: Page) => page.locator('#status').textContent();
/** A loaded CI machine can take seconds for what takes milliseconds here. */
const POLL = { timeout: 20_000 };

describe('the web console', () => {
  it('is served under a strict content security policy, with no inline script and nothing from elsewhere', async () => {
    const page = await fetch(`${node.url}/console/`);
    expect(page.status).toBe(200);
    const csp = page.headers.get('content-security-policy') as string;
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self' 'unsafe-eval'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    const html = await page.text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)/); // every script is a file of this node
    expect(html).not.toMatch(/https?:\/\//); // no CDN, no external font
    expect((await fetch(`${node.url}/console`, { redirect: 'manual' })).headers.get('location')).toBe('/console/');
  });

  it('a reader signs in with its key file, decrypts a 20 MiB record in the page, and the saved bytes match', async () => {
    const plain = bytes(20 * 1024 * 1024, 11);
    const { record } = await hospital.client.upload(plain, treatment([clinic.id]));
    const sent: string[] = [];
    const page = await signedIn(clinic, sent);
    await page.getByRole('button', { name: `Open record ${record.id}` }).waitFor();
    await page.screenshot({ path: join(ARTIFACTS, 'reader-records.png'), fullPage: true });
    const download = page.waitForEvent('download', { timeout: 60_000 });
    await page.getByRole('button', { name: `Open record ${record.id}` }).click();
    const saved = await (await download).path();
    expect(sha(readFileSync(saved))).toBe(sha(plain));
    await expect.poll(() => page.locator('#record-detail').textContent(), POLL).toContain('matches the hash anchored');
    await page.screenshot({ path: join(ARTIFACTS, 'reader-decrypted.png'), fullPage: true });
    // The key never left the page: no request carries its secret parts, nothing was stored.
    const keyText = readFileSync(clinic.keyFile, 'utf8');
    const seed = /# medvault-signing-key: (\S+)/.exec(keyText)?.[1] as string;
    const identity = /AGE-SECRET-KEY-1\S+/.exec(keyText)?.[0] as string;
    expect(sent.length).toBeGreaterThan(3);
    for (const request of sent) {
      expect(request).not.toContain(seed);
      expect(request.toUpperCase()).not.toContain(identity);
    }
    expect(await page.evaluate(() => localStorage.length)).toBe(0);
    await page.close();
  });

  it('an uploader encrypts and uploads in the page; the reader opens it with the stock age tool', async () => {
    const plain = bytes(3 * 1024 * 1024 + 17, 12);
    const file = join(work, 'letter.pdf');
    writeFileSync(file, plain);
    const page = await signedIn(hospital);
    await page.getByRole('link', { name: 'Upload' }).click();
    await page.getByLabel('File').setInputFiles(file);
    await page.getByLabel('Patient identifier or pseudonym').fill('MRN-4711');
    await page.getByLabel('clinic (reader)').check();
    await page.getByRole('button', { name: 'Encrypt and upload' }).click();
    const id = (await page.locator('[data-record-id]').getAttribute('data-record-id', { timeout: 30_000 })) as string;
    await page.screenshot({ path: join(ARTIFACTS, 'uploader-uploaded.png'), fullPage: true });
    // The subject is the consortium pseudonym of MRN-4711, computed in the page.
    const record = await hospital.client.record(id);
    expect(record.subject).not.toContain('MRN');
    const encrypted = join(work, 'letter.age');
    writeFileSync(encrypted, await served(clinic, id));
    const age = spawnSync('age', ['-d', '-i', clinic.keyFile, encrypted], { maxBuffer: 64 << 20 });
    expect(age.status, age.stderr.toString()).toBe(0);
    expect(sha(age.stdout)).toBe(sha(plain));
    await page.close();
  });

  it('a reader sees only its screens; the upload it cannot make is not offered', async () => {
    const page = await signedIn(clinic);
    const links = await page.locator('#nav a').allTextContents();
    expect(links).toEqual(['Records', 'Ledger', 'Status']);
    // Nor may it read the blocks behind the explorer (who accessed what, consortium-wide).
    const path = '/v1/ledger/blocks?limit=5';
    const refused = await fetch(`${node.url}${path}`, {
      headers: signRequest(clinic.keys.signing, 'GET', path, undefined),
    });
    expect(refused.status).toBe(403);
    expect(await refused.json()).toMatchObject({ code: 'FORBIDDEN' });
    await page.getByRole('link', { name: 'Status' }).click();
    await expect.poll(() => page.locator('#status-panel').textContent(), POLL).toContain(node.vault.nodeId);
    await page.screenshot({ path: join(ARTIFACTS, 'status.png'), fullPage: true });
    await page.close();
  });

  it('a cancelled upload leaves nothing', async () => {
    const before = (await hospital.client.records()).records.length;
    const file = join(work, 'scan.dcm');
    writeFileSync(file, bytes(96 * 1024 * 1024, 13));
    const page = await signedIn(hospital);
    await page.getByRole('link', { name: 'Upload' }).click();
    await page.getByLabel('File').setInputFiles(file);
    await page.getByLabel('Patient identifier or pseudonym').fill('MRN-4711');
    await page.getByRole('button', { name: 'Encrypt and upload' }).click();
    await page.getByRole('button', { name: 'Cancel' }).click();
    await expect.poll(() => statusOf(page), { timeout: 30_000 }).toContain('cancelled');
    expect((await hospital.client.records()).records.length).toBe(before);
    await page.close();
  });

  it('keeps the key on the device only when asked, encrypted with a passphrase', async () => {
    const page = await browser.newPage();
    await page.goto(`${node.url}/console/`);
    await page.setInputFiles('#key-file', clinic.keyFile);
    await page.getByLabel('Keep my key on this device').check();
    await page.getByLabel('Passphrase (only to keep the key)').fill('correct horse battery staple');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.locator('#who').textContent(), { timeout: 30_000 }).toContain('clinic');
    const kept = (await page.evaluate(() => localStorage.getItem('medvault.member-key'))) as string;
    expect(kept).toMatch(/^-----BEGIN AGE ENCRYPTED FILE-----/);
    const seed = /# medvault-signing-key: (\S+)/.exec(readFileSync(clinic.keyFile, 'utf8'))?.[1] as string;
    expect(kept).not.toContain(seed);
    await page.reload();
    await page.getByLabel('Passphrase', { exact: true }).fill('wrong passphrase here');
    await page.getByRole('button', { name: 'Unlock' }).click();
    await expect.poll(() => statusOf(page), { timeout: 30_000 }).toMatch(/passphrase|decrypt|KEY|AGE/i);
    expect(await page.locator('#who').textContent()).toBe('');
    await page.getByLabel('Passphrase', { exact: true }).fill('correct horse battery staple');
    await page.getByRole('button', { name: 'Unlock' }).click();
    await expect.poll(() => page.locator('#who').textContent(), { timeout: 30_000 }).toContain('clinic');
    await page.close();
  });

  it('a DPO closes a break-glass review, files an erasure with a cancel window, watches it run and verifies its certificate', async () => {
    const subject = pseudonym('MRN-9000', await hospital.client.subjectKey());
    const { record } = await hospital.client.upload(bytes(50_000, 14), { ...treatment([]), subject });
    await node.admin.client.setEmergencyAccess(clinic.id, true);
    const { reviewId } = await clinic.client.emergency(record.id, 'patient unconscious in A&E', {
      path: join(work, 'emergency.out'),
    });
    const page = await signedIn(dpo);
    await page.getByRole('link', { name: 'Reviews' }).click();
    await page.getByRole('button', { name: `unjustified ${reviewId}` }).click();
    await expect.poll(() => statusOf(page), POLL).toContain('Review closed as unjustified');
    const closed = (await dpo.client.reviews(true)).find((r) => r.id === reviewId);
    expect(closed?.outcome).toBe('unjustified');

    await page.getByRole('link', { name: 'Erasures' }).click();
    await page.getByLabel('Patient identifier, pseudonym or record id').fill('MRN-9000');
    await page.getByLabel('Cancel window, minutes').fill('0.05');
    await page.getByRole('button', { name: 'File erasure request' }).click();
    await expect.poll(() => statusOf(page), POLL).toContain('cancel window');
    const [filed] = (await dpo.client.erasures()).filter((e) => e.state === 'scheduled');
    const id = filed?.id as string;
    await expect.poll(() => page.locator(`[data-erasure-state="${id}"]`).textContent(), POLL).toBe('scheduled');
    await page.screenshot({ path: join(ARTIFACTS, 'dpo-erasure-scheduled.png'), fullPage: true });
    // The node's timer (serve) runs due erasures; here the test is the timer.
    await expect
      .poll(
        async () => {
          await node.vault.erasures.runDue();
          return (await dpo.client.erasures()).find((e) => e.id === id)?.state;
        },
        {
          timeout: 20_000,
        },
      )
      .toBe('done');
    await expect.poll(() => page.locator(`[data-erasure-state="${id}"]`).textContent(), POLL).toBe('done');
    await page.getByRole('button', { name: `Certificate of ${id}` }).click();
    await expect
      .poll(() => page.locator('#erasure-detail [data-verdict]').getAttribute('data-verdict'), POLL)
      .toBe('valid');
    expect(await page.locator('#erasure-detail').textContent()).toContain('Valid and complete: 1 record(s) erased');
    await page.screenshot({ path: join(ARTIFACTS, 'dpo-certificate.png'), fullPage: true });
    expect((await hospital.client.records({ state: 'erased' })).records.map((r) => r.id)).toContain(record.id);

    // Another, cancelled inside its window.
    const other = await hospital.client.upload(bytes(1_000, 15), treatment([]));
    await page.getByLabel('Patient identifier, pseudonym or record id').fill(other.record.id);
    await page.getByLabel('Cancel window, minutes').fill('60');
    await page.getByRole('button', { name: 'File erasure request' }).click();
    let pending = '';
    await expect
      .poll(async () => {
        pending = (await dpo.client.erasures()).find((e) => e.state === 'scheduled')?.id ?? '';
        return pending;
      }, POLL)
      .not.toBe('');
    await page.getByRole('button', { name: `Cancel ${pending}` }).click();
    await expect.poll(() => page.locator(`[data-erasure-state="${pending}"]`).textContent(), POLL).toBe('cancelled');
    await page.close();
  });

  it('the explorer verifies a receipt in the page and shows a tampered one as invalid', async () => {
    const { receipt } = await hospital.client.upload(bytes(2_000, 16), treatment([clinic.id]));
    const page = await signedIn(clinic);
    await page.getByRole('link', { name: 'Ledger' }).click();
    const check = async (value: unknown) => {
      await page.getByLabel('Receipt (JSON)').fill(JSON.stringify(value));
      await page.getByRole('button', { name: 'Verify' }).click();
      return page.locator('#receipt-verdict [data-verdict]').getAttribute('data-verdict');
    };
    expect(await check(receipt)).toBe('valid');
    await page.screenshot({ path: join(ARTIFACTS, 'explorer-receipt.png'), fullPage: true });
    expect(await check({ ...receipt, event: { ...receipt.event, at: (receipt.event.at as number) + 1 } })).toBe(
      'invalid',
    );
    expect(await check({ ...receipt, block: { ...receipt.block, height: receipt.block.height + 1 } })).toBe('invalid');
    expect(await page.locator('#receipt-verdict').textContent()).toContain('signature');
    await page.close();
  });

  it('the explorer checks every block it is served: one event changed on the way shows that block invalid', async () => {
    const page = await signedIn(dpo);
    await page.getByRole('link', { name: 'Ledger' }).click();
    await expect.poll(() => page.locator('[data-block-verdict]').count(), POLL).toBeGreaterThan(3);
    expect(await page.locator('[data-block-verdict="invalid"]').count()).toBe(0);
    await page.screenshot({ path: join(ARTIFACTS, 'explorer-blocks.png'), fullPage: true });
    // A node (or a proxy) that rewrites history: the page must not believe it.
    await page.route('**/v1/ledger/blocks*', async (route) => {
      const answer = await route.fetch();
      const body = (await answer.json()) as { blocks: Array<{ events: Array<{ at: number }> }> };
      (body.blocks[2]?.events[0] as { at: number }).at += 1;
      await route.fulfill({ response: answer, json: body });
    });
    await page.getByRole('link', { name: 'Status' }).click();
    await page.getByRole('link', { name: 'Ledger' }).click();
    await expect.poll(() => page.locator('[data-block-verdict="invalid"]').count(), POLL).toBeGreaterThan(0);
    expect(await page.locator('[data-block-verdict="invalid"]').first().getAttribute('title')).toMatch(/root/i);
    await page.close();
  });
});
