// The "limiter bypassed" gateway of `npm run bench`: `wrangler dev --alias ../limiter/slots.ts:./bench/probe/no-limiter.ts`
// builds the real gateway with this module in place of src/limiter/slots.ts. A request is still authenticated
// by its key's object and its usage still recorded there; only the leases (the key's and the upstream
// guard's) are skipped. It exists at build time of the benchmark only: no request can select it.
import { GatewayError } from "../../src/errors.ts";
import { keyStub, type Slot, type SlotRequest } from "../../src/limiter/slots.ts";

export * from "../../src/limiter/slots.ts";

export async function acquireSlot(env: Env, req: SlotRequest): Promise<Slot> {
  const key = keyStub(env, req.cred.keyId);
  const auth = await key.authenticate(req.cred, req.origin ?? null);
  if (!auth.ok) throw new GatewayError(auth.status, auth.code, auth.message);
  let released = false;
  return {
    caller: auth.caller,
    limit: req.model.concurrency[auth.caller.tier] ?? 0,
    inFlight: 0,
    renew: async () => true,
    keepAlive: () => () => undefined,
    async release(usage) {
      if (released) return;
      released = true;
      if (usage) await key.record(usage);
    },
  };
}
