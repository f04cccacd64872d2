/**
 * The ledger explorer: any receipt checked here (pasted or opened), the latest checkpoint
 * with its cosignatures, node and consortium status; and for an admin or DPO, the blocks
 * themselves, each one's root, link and signature checked here.
 */
import type { Block } from '../../anchor/block.ts';
import { eventsTree, headerSignatureValid, verifyBlock } from '../../anchor/block.ts';
import { verifyCheckpoint } from '../../anchor/checkpoint.ts';
import type { TrustedKeys } from '../../anchor/trusted-keys.ts';
import type { ConsortiumNode } from '../../services/protocol/views.ts';
import type { Api } from './api.ts';
import { receiptPanel } from './records.ts';
import {
  append,
  button,
  definitions,
  describe,
  field,
  fill,
  form,
  h,
  readFileText,
  say,
  short,
  table,
  verdict,
  when,
} from './ui.ts';

export function explorerScreen(api: Api, main: HTMLElement): void {
  const receiptOut = h('div', { id: 'receipt-verdict', 'aria-live': 'polite' });
  const receiptText = h('textarea', { name: 'receipt', id: 'receipt-text', spellcheck: 'false' });
  const receiptFile = h('input', { type: 'file', accept: '.json,application/json' });
  receiptFile.addEventListener('change', async () => {
    receiptText.value = await readFileText(receiptFile);
  });
  const checkpointOut = h('div', { id: 'checkpoint' });
  const blocksOut = h('div', { id: 'blocks' });
  fill(
    main,
    h('h1', {}, 'Ledger'),
    h('h2', {}, 'Verify a receipt'),
    form(
      (data) => {
        let parsed: unknown;
        try {
          parsed = JSON.parse(String(data.get('receipt')));
        } catch {
          receiptOut.replaceChildren(verdict(false, 'Invalid receipt: not JSON'));
          return;
        }
        receiptOut.replaceChildren(receiptPanel(api, parsed));
      },
      field('Receipt (JSON)', receiptText),
      field('or open a receipt file', receiptFile),
      h('button', { type: 'submit' }, 'Verify'),
    ),
    receiptOut,
    h('h2', {}, 'Latest checkpoint'),
    checkpointOut,
    api.me?.role === 'admin' || api.me?.role === 'dpo' ? h('h2', {}, 'Blocks') : null,
    blocksOut,
  );
  void showCheckpoint(api, checkpointOut);
  if (api.me?.role === 'admin' || api.me?.role === 'dpo')
    void showBlocks(api, blocksOut).catch((err) => say(describe(err), true));
}

async function showCheckpoint(api: Api, out: HTMLElement): Promise<void> {
  try {
    const checkpoint = await api.json<unknown>('GET', '/v1/checkpoints/latest');
    const v = verifyCheckpoint(checkpoint, { trusted: api.trusted });
    out.replaceChildren(
      verdict(
        true,
        `Block ${v.height} checkpointed, signed by ${v.signers.length} node(s): ${v.signers.map(short).join(', ')}.`,
      ),
      definitions([['Block hash', h('code', {}, v.blockHash)]]),
    );
  } catch (err) {
    out.replaceChildren(h('p', {}, describe(err)));
  }
}

async function showBlocks(api: Api, out: HTMLElement, before?: number, above?: Block): Promise<void> {
  const query = new URLSearchParams({ limit: '20', ...(before !== undefined ? { before: String(before) } : {}) });
  const page = await api.json<{ blocks: Block[]; next: number | null }>('GET', `/v1/ledger/blocks?${query}`);
  out.querySelector('.more')?.remove();
  const rows = page.blocks.map((block, i) => {
    // Newest first: each block is checked with the one below it (its link); the first of a
    // page also with the last of the page before (the block above it).
    const problem = blockProblem(block, page.blocks[i + 1], i === 0 ? above : undefined, api.trusted);
    const ok = problem === null;
    const why = problem ?? 'root, count, signature and links verified';
    return [
      String(block.header.height),
      when(block.header.time),
      String(block.events.length),
      block.events.map((e) => e.type).join(', '),
      h('span', { class: 'mono' }, short(block.header.signer)),
      h('span', { 'data-block-verdict': ok ? 'valid' : 'invalid', title: why }, ok ? 'verified' : `INVALID: ${why}`),
    ];
  });
  append(out, table(['Height', 'Time', 'Events', 'Types', 'Signer', 'Check'], rows));
  const last = page.blocks.at(-1);
  if (page.next !== null) {
    append(
      out,
      button('Older blocks', () => showBlocks(api, out, page.next as number, last), { class: 'secondary more' }),
    );
  }
}

/** Why `block` does not verify (its root, count, signature, links, signer), or null. */
function blockProblem(
  block: Block,
  below: Block | undefined,
  above: Block | undefined,
  trusted: TrustedKeys,
): string | null {
  try {
    if (below || block.header.height === 0) verifyBlock(block, below ? below.header : null);
    else if (block.header.count !== block.events.length || eventsTree(block.events).rootHex !== block.header.root) {
      return 'its Merkle root or count does not match its events';
    } else if (!headerSignatureValid(block.header)) return 'its signature does not verify';
    if (above) verifyBlock(above, block.header);
  } catch (err) {
    return describe(err);
  }
  const { signer, height } = block.header;
  return trusted.allows(signer, height) ? null : `signed by ${signer}, not a node key this node knows at that height`;
}

export function statusScreen(api: Api, main: HTMLElement): void {
  const out = h('div', { id: 'status-panel' });
  main.replaceChildren(h('h1', {}, 'Node and consortium'), out);
  void (async () => {
    const node = await api.publicJson<{ id: string; ledger: string; height: number | null; peers?: string[] }>(
      '/v1/node',
    );
    const ready = await fetch('/readyz').then(
      (r) => r.json() as Promise<{ status: string; checks: Record<string, string> }>,
    );
    const { nodes } = await api.json<{ nodes: ConsortiumNode[] }>('GET', '/v1/consortium/nodes');
    out.replaceChildren(
      definitions([
        ['Node', h('code', {}, node.id)],
        ['Ledger', `${node.ledger}, height ${node.height ?? 'empty'}`],
        [
          'Ready',
          `${ready.status} (${Object.entries(ready.checks)
            .map(([k, v]) => `${k}: ${v}`)
            .join(', ')})`,
        ],
      ]),
      h('h2', {}, 'Consortium nodes'),
      table(
        ['Node', 'State', 'Address', 'Since'],
        nodes.map((n) => [h('code', {}, n.id), n.state, n.url ?? '', when(n.since)]),
      ),
    );
  })().catch((err) => say(describe(err), true));
}
