import koffi from 'koffi';

/**
 * The one handle on the C library, shared by every binding module in src/sys/ so each function
 * is declared once per process (koffi declarations are per thread/isolate, which is fine: every
 * worker that imports a binding module gets its own copy).
 */
export const libc = koffi.load('libc.so.6');
export { koffi };
