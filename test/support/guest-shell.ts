/**
 * Runs commands in a guest's shell over a serial console and gets back each command's output and
 * exit status. The console is a byte stream shared with the terminal's echo of what we type and
 * with anything the kernel prints, so each command is framed by two markers that only the shell
 * can produce: they contain an arithmetic expansion (`$((0))`) and `$?`, which the echo of the
 * typed line shows literally and only the shell's own output shows expanded.
 */

/** A console: what the guest printed so far, and a way to type. */
export interface ConsoleChannel {
  /** Everything received on the console so far. */
  readonly stdout: string;
  write(text: string): void;
  /** Resolves with the first match of `pattern` in `stdout` from offset `from`. */
  waitFor(pattern: RegExp, timeoutMs: number, from: number): Promise<RegExpMatchArray>;
}

export interface CommandResult {
  /** The command's stdout and stderr, CRs removed, without the final newline. */
  output: string;
  status: number;
}

/** The line(s) typed for command number `id`. */
export function framedCommand(id: number, command: string): string {
  // One line: the shell prints its prompt before it reads each line, and a prompt between the
  // markers would end up in the output. `$?` is the status of the command's last pipeline (0
  // after a command sent to the background with `&`, which takes no `;` after it).
  const separator = command.trimEnd().endsWith('&') ? '' : ';';
  return `echo "@@S${id}@$((0))"; ${command}${separator} echo "@@E${id}@$?@$((0))"\n`;
}

/**
 * The result of command `id` in console text `text` (CRs included or not), or undefined while
 * its end marker has not arrived.
 */
export function parseFramed(text: string, id: number): CommandResult | undefined {
  const clean = text.replace(/\r/g, '');
  const end = new RegExp(`@@E${id}@(\\d+)@0`).exec(clean);
  if (end === null) return undefined;
  const startMarker = `@@S${id}@0\n`;
  const start = clean.lastIndexOf(startMarker, end.index);
  if (start < 0) throw new Error(`command ${id}: end marker without a start marker in:\n${clean.slice(-2000)}`);
  const output = clean.slice(start + startMarker.length, end.index).replace(/\n$/, '');
  return { output, status: Number(end[1]) };
}

export class GuestShell {
  private nextId = 1;

  constructor(private readonly console: ConsoleChannel) {}

  /** Runs `command` (one shell command line, may contain `;`, pipes, `&&`); resolves when it ends. */
  async run(command: string, timeoutMs = 120_000): Promise<CommandResult> {
    if (command.includes('\n')) throw new Error('GuestShell.run takes one line; join commands with ;');
    const id = this.nextId++;
    const from = this.console.stdout.length;
    this.console.write(framedCommand(id, command));
    try {
      await this.console.waitFor(new RegExp(`@@E${id}@\\d+@0`), timeoutMs, from);
    } catch (e) {
      throw new Error(`guest command did not finish: ${command}\n${(e as Error).message}`);
    }
    return parseFramed(this.console.stdout.slice(from), id)!;
  }

  /** Like run, but fails unless the status is 0; returns the output. */
  async ok(command: string, timeoutMs?: number): Promise<string> {
    const r = await this.run(command, timeoutMs);
    if (r.status !== 0) throw new Error(`guest command failed with status ${r.status}: ${command}\n${r.output}`);
    return r.output;
  }
}
