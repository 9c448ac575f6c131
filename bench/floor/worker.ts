// The floor: the least a Worker in front of GLM can do. It forwards the request to the upstream and returns
// the upstream's answer, body streamed untouched — what the runtime itself costs, which `npm run bench`
// compares glm-edge against. Not part of the gateway.
interface FloorEnv {
  UPSTREAM: string;
}

export default {
  async fetch(request: Request, env: FloorEnv): Promise<Response> {
    const url = new URL(request.url);
    // Answered here so the benchmark can tell the Worker is up, as it does for the gateway.
    if (url.pathname === "/healthz") return new Response("ok");
    const upstream = await fetch(env.UPSTREAM + url.pathname.replace(/^\/v1/, "") + url.search, {
      method: request.method,
      headers: request.headers,
      body: request.body,
    });
    return new Response(upstream.body, { status: upstream.status, headers: upstream.headers });
  },
};
