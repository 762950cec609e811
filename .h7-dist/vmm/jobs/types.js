/** Request and status shapes of block jobs (block-commit, block-pull), as the API carries them. */
export {};
//# sourceMappingURL=types.js.map