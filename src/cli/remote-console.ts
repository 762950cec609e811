import type { WebSocket } from 'ws';

/**
 * `tsvmm-remote console`: the terminal ↔ the vm.console WebSocket. On a TTY the terminal goes raw
 * (every key, Ctrl-C included, goes to the guest) and Ctrl-] detaches, like telnet; the terminal
 * mode is restored however the session ends. From a pipe, end of input detaches. Either way a line
 * on stderr says when the console is attached: a script can wait for it before resuming a
 * restored guest whose output it must not miss.
 */
export const DETACH_BYTE = 0x1d; // Ctrl-]

export interface ConsoleIo {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

export function runConsole(ws: WebSocket, io: ConsoleIo, signal?: AbortSignal): Promise<void> {
  const tty = io.stdin.isTTY === true && typeof io.stdin.setRawMode === 'function';
  if (tty) {
    io.stdin.setRawMode?.(true);
    io.stderr.write("Connected to the guest console. Escape character is '^]'.\r\n");
  } else {
    io.stderr.write('Connected to the guest console.\n');
  }
  return new Promise<void>((resolve) => {
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      io.stdin.off('data', onInput);
      io.stdin.off('end', finish);
      signal?.removeEventListener('abort', finish);
      if (tty) {
        io.stdin.setRawMode?.(false);
        io.stderr.write('\r\nDetached from the guest console.\n');
      }
      io.stdin.pause();
      ws.close();
      resolve();
    };
    const onInput = (chunk: Buffer | string): void => {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      const escape = bytes.indexOf(DETACH_BYTE);
      const forward = escape < 0 ? bytes : bytes.subarray(0, escape);
      if (forward.length > 0 && ws.readyState === ws.OPEN) ws.send(forward, { binary: true });
      if (escape >= 0) finish();
    };
    ws.on('message', (data: Buffer) => io.stdout.write(data));
    ws.once('close', finish);
    io.stdin.on('data', onInput);
    io.stdin.once('end', finish);
    signal?.addEventListener('abort', finish, { once: true });
    io.stdin.resume();
  });
}
