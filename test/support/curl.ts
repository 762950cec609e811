/** The API as curl users drive it: `curl --unix-socket S -X METHOD [-d BODY] http://localhost/api/v1/ROUTE`. */
import { expect } from 'vitest';
import { run } from './tsvmm-process.js';
import { deadline } from './timing.js';

export interface CurlAnswer {
  status: number;
  body: string;
}

/** One request; the HTTP status comes from curl's -w, the body is what the server sent. */
export async function curl(socket: string, method: string, route: string, body?: string): Promise<CurlAnswer> {
  const args = ['-sS', '--unix-socket', socket, '-X', method, '-o', '-', '-w', '\n%{http_code}', `http://localhost/api/v1/${route}`];
  if (body !== undefined) args.push('-H', 'Content-Type: application/json', '-d', body);
  const r = await run('curl', args, { timeoutMs: deadline(20_000) });
  expect(r.code, r.stderr).toBe(0);
  const cut = r.stdout.lastIndexOf('\n');
  return { status: Number(r.stdout.slice(cut + 1)), body: r.stdout.slice(0, cut) };
}
