// The part of the execution context services use, so a service needs no Hono or Worker type to outlive its request.

/** Call it as ctx.waitUntil(…): never detach the method. */
export interface WaitUntil {
  waitUntil(promise: Promise<unknown>): void;
}
