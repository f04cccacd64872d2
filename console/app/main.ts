/**
 * The web console: sign in with a member key file (kept in this page's memory; on this
 * device only if the member asks, then encrypted with a passphrase, age scrypt), then the
 * screens the member's role may use.
 */
import { decrypt, encrypt } from '../../crypto/age.ts';
import { ArmorDecoder, ArmorEncoder } from '../../crypto/armor.ts';
import { ScryptIdentity, ScryptRecipient } from '../../crypto/scrypt.ts';
import { parseMemberKeyFile } from '../../services/protocol/member-keys.ts';
import type { Role } from '../../services/protocol/views.ts';
import { Api } from './api.ts';
import { erasuresScreen, reportScreen, reviewsScreen } from './dpo.ts';
import { explorerScreen, statusScreen } from './explorer.ts';
import { recordsScreen } from './records.ts';
import { button, describe, field, fill, form, h, readFileText, say } from './ui.ts';
import { uploadScreen } from './upload.ts';

const STORED = 'medvault.member-key';

interface Screen {
  id: string;
  title: string;
  roles: readonly Role[];
  show: (api: Api, main: HTMLElement) => void;
}

const SCREENS: Screen[] = [
  { id: 'records', title: 'Records', roles: ['uploader', 'reader', 'dpo'], show: recordsScreen },
  { id: 'upload', title: 'Upload', roles: ['uploader'], show: uploadScreen },
  { id: 'reviews', title: 'Reviews', roles: ['dpo'], show: reviewsScreen },
  { id: 'erasures', title: 'Erasures', roles: ['dpo'], show: erasuresScreen },
  { id: 'report', title: 'Access report', roles: ['dpo'], show: reportScreen },
  { id: 'ledger', title: 'Ledger', roles: ['uploader', 'reader', 'dpo', 'admin'], show: explorerScreen },
  { id: 'status', title: 'Status', roles: ['uploader', 'reader', 'dpo', 'admin'], show: statusScreen },
];

const main = () => document.getElementById('main') as HTMLElement;

function signInScreen(): void {
  const stored = localStorage.getItem(STORED);
  const keyFile = h('input', { type: 'file', name: 'key', id: 'key-file' });
  fill(
    main(),
    h('h1', {}, 'Sign in'),
    h(
      'p',
      {},
      'Open your member key file. It stays in this page: it signs your requests and decrypts your records here, and is never sent.',
    ),
    form(
      async (data) => {
        const text = await readFileText(keyFile);
        const api = await signIn(text);
        if (data.get('keep')) {
          const passphrase = String(data.get('passphrase'));
          if (passphrase.length < 12) throw new Error('choose a passphrase of at least 12 characters to keep the key');
          localStorage.setItem(STORED, wrapKey(text, passphrase));
        }
        start(api);
      },
      field('Member key file', keyFile),
      h(
        'label',
        { class: 'inline' },
        h('input', { type: 'checkbox', name: 'keep' }),
        'Keep my key on this device, encrypted with a passphrase',
      ),
      field(
        'Passphrase (only to keep the key)',
        h('input', { type: 'password', name: 'passphrase', autocomplete: 'new-password' }),
      ),
      h('button', { type: 'submit' }, 'Sign in'),
    ),
    stored
      ? h(
          'section',
          {},
          h('h2', {}, 'Or unlock the key kept on this device'),
          form(
            async (data) => start(await signIn(unwrapKey(stored, String(data.get('passphrase'))))),
            field(
              'Passphrase',
              h('input', { type: 'password', name: 'passphrase', autocomplete: 'current-password', required: true }),
            ),
            h('button', { type: 'submit' }, 'Unlock'),
          ),
          button(
            'Forget the kept key',
            () => {
              localStorage.removeItem(STORED);
              signInScreen();
            },
            { class: 'secondary' },
          ),
        )
      : null,
  );
}

async function signIn(keyFileText: string): Promise<Api> {
  const api = new Api(parseMemberKeyFile(keyFileText));
  await api.signIn();
  return api;
}

function wrapKey(text: string, passphrase: string): string {
  const armor = new ArmorEncoder();
  const sealed = encrypt([new ScryptRecipient(passphrase)], new TextEncoder().encode(text));
  return armor.update(sealed) + armor.final();
}

function unwrapKey(stored: string, passphrase: string): string {
  const decoder = new ArmorDecoder();
  const bytes = [...decoder.update(new TextEncoder().encode(stored)), ...decoder.final()];
  const joined = new Uint8Array(bytes.reduce((n, b) => n + b.length, 0));
  let at = 0;
  for (const b of bytes) {
    joined.set(b, at);
    at += b.length;
  }
  return new TextDecoder().decode(decrypt([new ScryptIdentity(passphrase)], joined));
}

function start(api: Api): void {
  const me = api.me;
  if (!me) return;
  const mine = SCREENS.filter((s) => s.roles.includes(me.role));
  const nav = document.getElementById('nav') as HTMLElement;
  const who = document.getElementById('who') as HTMLElement;
  who.replaceChildren(
    `${me.name} (${me.role})`,
    ' ',
    button(
      'Sign out',
      () => {
        location.hash = '';
        location.reload();
      },
      { class: 'secondary' },
    ),
  );
  const show = () => {
    const screen = mine.find((s) => `#${s.id}` === location.hash) ?? (mine[0] as Screen);
    for (const link of nav.querySelectorAll('a')) {
      if (link.getAttribute('href') === `#${screen.id}`) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    say('');
    screen.show(api, main());
    main().focus();
  };
  nav.replaceChildren(...mine.map((s) => h('a', { href: `#${s.id}` }, s.title)));
  window.addEventListener('hashchange', show);
  show();
}

window.addEventListener('error', (e) => say(describe(e.error ?? e.message), true));
window.addEventListener('unhandledrejection', (e) => say(describe(e.reason), true));
signInScreen();
