/** qemu-img's `-p` progress line on stderr: "    (12.00/100%)", redrawn in place. */
export class Progress {
  private shown = -1;

  constructor(private readonly enabled: boolean, private readonly stream: NodeJS.WriteStream = process.stderr) {}

  update(done: number, total: number): void {
    if (!this.enabled) return;
    const pct = total === 0 ? 100 : Math.min(100, (done / total) * 100);
    if (pct - this.shown < 1 && pct !== 100) return;
    this.shown = pct;
    this.stream.write(`    (${pct.toFixed(2)}/100%)\r`);
  }

  finish(): void {
    if (!this.enabled) return;
    this.update(1, 1);
    this.stream.write('\n');
  }
}
