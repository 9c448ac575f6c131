// The typed Hono environment shared by middleware and routes.
import type { Credential } from "../auth/credentials.ts";
import type { LogFields } from "../shared/log.ts";

export interface AppVariables {
  requestId: string;
  startedAt: number;
  /** Fields of this request's single log line; routes add to it. */
  logLine: LogFields;
  /**
   * Set by a route whose answer ends after the handler returns (a stream): the fields its outcome adds to
   * the log line, resolved once the answer has been sent in full and settled. The middleware waits for it.
   */
  settled?: Promise<LogFields>;
  cred: Credential;
}

export type AppEnv = { Bindings: Env; Variables: AppVariables };
