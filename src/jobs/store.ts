// Where jobs live: one JobObject per job, addressed by the job id. Ids are random (128 bits), so they
// cannot be guessed; ownership is still checked on every read (a key sees only its own jobs).
import { randomHex } from "../auth/crypto.ts";

export const JOB_ID_RE = /^job_[0-9a-f]{32}$/;

export function newJobId(): string {
  return `job_${randomHex(16)}`;
}

export function jobStub(env: Env, jobId: string) {
  return env.JOBS.get(env.JOBS.idFromName(jobId));
}
