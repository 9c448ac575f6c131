// Bookkeeping for tests: counters, per-model in-flight gauges and a bounded log of recent requests.
// The live in-flight gauges survive reset() on purpose: they are the truth the concurrency limit
// is enforced against, while counters and the log start afresh.

export type Ended = "completed" | "cancelled" | "error" | "break" | "hang";

export type RequestRecord = {
  seq: number;
  model: string | null;
  stream: boolean;
  request_id: string | null;
  ended: Ended | null; // null while still in flight
  status: number;
  prompt_tokens: number;
  completion_tokens: number;
  last_user_excerpt: string;
  document_digest?: string;
  received_at: number; // epoch milliseconds
  // FNV-1a (hex) and length of the exact body bytes sent for a 200 answer, so tests can prove that
  // what a client received through the gateway is byte-identical to what left the simulator.
  body_fnv?: string;
  body_bytes?: number;
};

type ModelStats = { in_flight: number; max_in_flight: number; total: number };

export type SimStats = {
  in_flight: number;
  max_in_flight: number;
  total: number;
  completed: number;
  cancelled: number;
  errors: number;
  by_model: Record<string, ModelStats>;
  usage: { prompt_tokens: number; completion_tokens: number };
};

/** A request's handle on the ledger. end() is idempotent: the first outcome reported wins. */
export type Ticket = {
  record: RequestRecord;
  setModel(model: string): void; // a valid model: counts the request in by_model
  hold(): void; // take an in-flight slot for record.model until end()
  end(ended: Ended, status?: number): void;
  report(prompt: number, completion: number): void; // usage actually sent to the client
};

const MAX_LOG = 1000;

type Counters = Omit<SimStats, "in_flight" | "by_model"> & { models: Record<string, ModelStats> };

function freshCounters(maxInFlight: number): Counters {
  return {
    max_in_flight: maxInFlight,
    total: 0,
    completed: 0,
    cancelled: 0,
    errors: 0,
    models: {},
    usage: { prompt_tokens: 0, completion_tokens: 0 },
  };
}

export class Ledger {
  #live = new Map<string, number>();
  #liveTotal = 0;
  #counters = freshCounters(0);
  #log: RequestRecord[] = [];

  inFlight(model: string): number {
    return this.#live.get(model) ?? 0;
  }

  open(record: RequestRecord): Ticket {
    const counters = this.#counters; // reset() swaps the object, so requests from before count nowhere
    counters.total++;
    this.#log.push(record);
    if (this.#log.length > MAX_LOG) this.#log.shift();
    let model = "";
    let holding = false;
    const entry = (): ModelStats => (counters.models[model] ??= { in_flight: 0, max_in_flight: 0, total: 0 });
    return {
      record,
      setModel: (name) => {
        model = record.model = name;
        entry().total++;
      },
      hold: () => {
        if (holding || record.ended) return;
        holding = true;
        const n = this.inFlight(model) + 1;
        this.#live.set(model, n);
        this.#liveTotal++;
        entry().max_in_flight = Math.max(entry().max_in_flight, n);
        counters.max_in_flight = Math.max(counters.max_in_flight, this.#liveTotal);
      },
      end: (ended, status) => {
        if (record.ended) return;
        record.ended = ended;
        if (status !== undefined) record.status = status;
        if (holding) {
          this.#live.set(model, this.inFlight(model) - 1);
          this.#liveTotal--;
        }
        if (ended === "completed") counters.completed++;
        else if (ended === "cancelled" || ended === "hang") counters.cancelled++;
        else counters.errors++;
      },
      report: (prompt, completion) => {
        counters.usage.prompt_tokens += prompt;
        counters.usage.completion_tokens += completion;
      },
    };
  }

  stats(): SimStats {
    const { models, max_in_flight, total, completed, cancelled, errors, usage } = this.#counters;
    const by_model: Record<string, ModelStats> = {};
    for (const [model, m] of Object.entries(models)) by_model[model] = { ...m, in_flight: this.inFlight(model) };
    return structuredClone({
      in_flight: this.#liveTotal,
      max_in_flight,
      total,
      completed,
      cancelled,
      errors,
      by_model,
      usage,
    });
  }

  requests(limit = 100): RequestRecord[] {
    return limit > 0 ? structuredClone(this.#log.slice(-limit)) : [];
  }

  reset(): void {
    this.#counters = freshCounters(this.#liveTotal);
    this.#log = [];
  }
}
