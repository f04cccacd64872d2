/** The demo tells the truth: run it small and check what it says happened. */
import { describe, expect, it } from 'vitest';
import { runDemo } from '../../services/cli/demo.ts';

describe('medvault demo', () => {
  it('runs the whole scenario and every step reports success', async () => {
    const lines: string[] = [];
    await runDemo({ sizeMiB: 2, say: (line) => lines.push(line) });
    const text = lines.join('\n');
    expect(text).toContain('2097152 bytes, identical to the original');
    expect(text).toContain('opens with the stock `age` tool: yes');
    expect(text).toContain("the insurer's next fetch: refused, NO_GRANT");
    expect(text).toContain('the insurer tries break-glass: refused, FORBIDDEN');
    expect(text).toMatch(/access given \(2097152 bytes\) and anchored as access\.emergency/);
    expect(text).toMatch(/closes it as justified, anchored as review\.closed/);
    expect(text).toContain('the record now answers: RECORD_ERASED (HTTP 410)');
    expect(text).toMatch(/the sweep looked in \d+ places .* and found no trace/);
    expect(text).toMatch(/certificate OK: 1 record\(s\), key destroyed: true/);
    expect(text).toMatch(/ledger OK: \d+ blocks/);
    expect(text).toContain("none names the patient's MRN or pseudonym");
    expect(text).not.toMatch(/NOT REFUSED|DIFFERENT|STILL THERE|: NO \(/);
    expect(lines.at(-1)).toBe('Done.');
  });
});
