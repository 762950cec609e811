/**
 * The marker protocol of GuestShell against console text as a real serial console delivers it:
 * with the terminal's echo of the typed line, CRLF line ends, a prompt, and kernel messages.
 */
import { describe, expect, it } from 'vitest';
import { GuestShell, framedCommand, parseFramed, type ConsoleChannel } from './guest-shell.js';

/** What an echoing terminal plus ash print for a framed command with the given output. */
function consoleFor(id: number, command: string, output: string, status: number): string {
  const typed = framedCommand(id, command).replace(/\n/g, '\r\n');
  const body = output === '' ? '' : `${output.replace(/\n/g, '\r\n')}\r\n`;
  return `${typed}@@S${id}@0\r\n${body}@@E${id}@${status}@0\r\n# `;
}

describe('GuestShell framing', () => {
  it('takes the output between the expanded markers, not the echoed ones', () => {
    const text = consoleFor(3, 'cat /proc/cmdline', 'console=ttyS0 @@E3@ x', 0);
    expect(parseFramed(text, 3)).toEqual({ output: 'console=ttyS0 @@E3@ x', status: 0 });
  });

  it('reports the status of the command, and multi-line output', () => {
    expect(parseFramed(consoleFor(1, 'false', '', 1), 1)).toEqual({ output: '', status: 1 });
    expect(parseFramed(consoleFor(2, 'seq 3', '1\n2\n3', 0), 2)).toEqual({ output: '1\n2\n3', status: 0 });
  });

  it('is undefined until the end marker has arrived (the echo alone is not the end)', () => {
    const text = consoleFor(4, 'sleep 9', '', 0);
    const echoOnly = text.slice(0, text.indexOf('@@S4@0'));
    expect(echoOnly).toContain('@@E4@$?@$((0))');
    expect(parseFramed(echoOnly, 4)).toBeUndefined();
    expect(parseFramed(text.slice(0, text.indexOf('@@E4@0@0')), 4)).toBeUndefined();
  });

  it('does not mistake an earlier command for this one', () => {
    const text = consoleFor(5, 'echo a', 'a', 0) + consoleFor(6, 'echo b', 'b', 2);
    expect(parseFramed(text, 6)).toEqual({ output: 'b', status: 2 });
  });

  it('sends a command ending in & without a ; after it', () => {
    expect(framedCommand(7, 'sleep 100 &')).toBe('echo "@@S7@$((0))"; sleep 100 & echo "@@E7@$?@$((0))"\n');
    expect(framedCommand(8, 'true')).toBe('echo "@@S8@$((0))"; true; echo "@@E8@$?@$((0))"\n');
  });

  it('runs one command over a console channel and refuses multi-line input', async () => {
    let stdout = 'boot noise\r\n';
    const channel: ConsoleChannel = {
      get stdout() { return stdout; },
      write: (text) => {
        // A guest that answers after the typed line reaches it.
        setTimeout(() => { stdout += consoleFor(1, 'uname', 'Linux', 0).replace(/^[^\r]*\r\n/, `${text.replace(/\n/g, '\r\n')}`); }, 5);
      },
      waitFor: async (pattern, _timeoutMs, from) => {
        for (let i = 0; i < 100; i++) {
          const m = stdout.slice(from).match(pattern);
          if (m !== null) return m;
          await new Promise((r) => setTimeout(r, 5));
        }
        throw new Error('no match');
      },
    };
    const shell = new GuestShell(channel);
    await expect(shell.run('uname')).resolves.toEqual({ output: 'Linux', status: 0 });
    await expect(shell.run('a\nb')).rejects.toThrow(/one line/);
  });
});
