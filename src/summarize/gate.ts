// Local concurrency for one summary: a FIFO semaphore (pieces start in text order) and an abortable sleep.
// Both give up as soon as the summary is abandoned.

export class Gate {
  private used = 0;
  private readonly waiters: (() => void)[] = [];
  constructor(public size: number) {}

  async take(signal: AbortSignal): Promise<void> {
    if (signal.aborted) throw signal.reason;
    if (this.used < this.size) {
      this.used++;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const grant = () => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      };
      const onAbort = () => {
        const i = this.waiters.indexOf(grant);
        if (i !== -1) this.waiters.splice(i, 1);
        reject(signal.reason);
      };
      this.waiters.push(grant);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  give(): void {
    const next = this.waiters.shift();
    if (next)
      next(); // the permit passes straight to the next waiter
    else this.used--;
  }
}

export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal.removeEventListener("abort", stop);
      resolve();
    }, ms);
    const stop = () => {
      clearTimeout(t);
      reject(signal.reason);
    };
    signal.addEventListener("abort", stop, { once: true });
  });
}
