/**
 * The console's DOM helpers: elements are built with textContent only (never innerHTML),
 * so nothing a node or a record sends can become markup.
 */

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | EventListener | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (typeof value === 'function') el.addEventListener(name.replace(/^on/, ''), value);
    else if (value === true) el.setAttribute(name, '');
    else el.setAttribute(name, String(value));
  }
  append(el, ...children);
  return el;
}

export function append(el: Element, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(typeof child === 'number' ? String(child) : child);
  }
}

/** Replaces `el`'s children (nulls and falses skipped). */
export function fill(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, ...children);
}

/** A labelled form field: the label wraps the control, so it is named for assistive technology. */
export function field(label: string, control: HTMLElement): HTMLLabelElement {
  return h('label', {}, label, control);
}

export function table(headings: string[], rows: Child[][]): HTMLTableElement {
  return h(
    'table',
    {},
    h('thead', {}, h('tr', {}, ...headings.map((t) => h('th', { scope: 'col' }, t)))),
    h(
      'tbody',
      {},
      ...rows.map((cells) =>
        h('tr', {}, ...cells.map((c) => (c instanceof HTMLTableCellElement ? c : h('td', {}, c)))),
      ),
    ),
  );
}

export function actions(...buttons: Child[]): HTMLTableCellElement {
  return h('td', { class: 'actions' }, ...buttons);
}

export function button(label: string, onClick: () => void | Promise<void>, attrs: Attrs = {}): HTMLButtonElement {
  const b = h('button', { type: 'button', ...attrs }, label);
  b.addEventListener('click', () => void run(onClick, b));
  return b;
}

/** A form whose submit runs `onSubmit` (its button disabled meanwhile), errors shown in the status bar. */
export function form(onSubmit: (data: FormData) => void | Promise<void>, ...children: Child[]): HTMLFormElement {
  const f = h('form', {}, ...children);
  f.addEventListener('submit', (e) => {
    e.preventDefault();
    void run(() => onSubmit(new FormData(f)), f.querySelector('button[type=submit]'));
  });
  return f;
}

export async function run(work: () => void | Promise<void>, control?: HTMLElement | null): Promise<void> {
  if (control) control.setAttribute('disabled', '');
  try {
    await work();
  } catch (err) {
    say(describe(err), true);
  } finally {
    control?.removeAttribute('disabled');
  }
}

export function describe(err: unknown): string {
  const e = err as { code?: string; message?: string };
  return e.code ? `${e.code}: ${e.message}` : String(e.message ?? err);
}

export function say(text: string, bad = false): void {
  const status = document.getElementById('status') as HTMLElement;
  status.textContent = text;
  status.className = bad ? 'bad' : '';
}

/** A verdict box: verified, or why not. */
export function verdict(ok: boolean, text: string): HTMLElement {
  return h(
    'div',
    { class: `verdict ${ok ? 'ok' : 'bad'}`, role: 'status', 'data-verdict': ok ? 'valid' : 'invalid' },
    text,
  );
}

export function definitions(pairs: Array<[string, Child]>): HTMLDListElement {
  return h('dl', {}, ...pairs.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

export const when = (ms: number | null | undefined): string => (ms ? new Date(ms).toLocaleString() : '');
export const short = (id: string): string => `${id.slice(0, 8)}…`;
export const sizeOf = (bytes: number): string =>
  bytes < 1024
    ? `${bytes} B`
    : bytes < 1 << 20
      ? `${(bytes / 1024).toFixed(1)} KiB`
      : `${(bytes / (1 << 20)).toFixed(1)} MiB`;

/** Offers `parts` as a file download named `name`. */
export function save(parts: BlobPart[], name: string, type = 'application/octet-stream'): HTMLAnchorElement {
  const link = h('a', { href: URL.createObjectURL(new Blob(parts, { type })), download: name }, `Save ${name} again`);
  link.click();
  return link;
}

export async function readFileText(input: HTMLInputElement): Promise<string> {
  const file = input.files?.[0];
  if (!file) throw new Error('choose a file first');
  return file.text();
}
