// GLM error codes with their HTTP status and messages, and the JSON responses the simulator sends.
// The upstream error body is always {"error":{"code":"<string>","message":"<text>"}} and carries
// no Retry-After or rate-limit headers, even on 429 — gateways must not rely on them.

const ERRORS: Record<string, readonly [status: number, zh: string, en: string]> = {
  "1000": [401, "身份验证失败。", "Authentication failed."],
  "1001": [401, "Header中未收到Authorization参数，无法进行身份验证。", "Authorization header is missing."],
  "1002": [401, "Authorization Token非法，请确认Authorization Token正确传递。", "Invalid Authorization token."],
  "1003": [401, "Authorization Token已过期，请重新生成/获取。", "Authorization token has expired."],
  "1004": [
    401,
    "Authorization Token验证失败，请确认Authorization Token正确。",
    "Authorization token verification failed.",
  ],
  "1210": [400, "API 调用参数有误，请检查文档。", "Invalid API parameters, please check the documentation."],
  "1211": [400, "模型不存在，请检查模型代码。", "Model does not exist, please check the model code."],
  "1214": [400, "参数非法。请检查文档。", "Illegal parameter, please check the documentation."],
  "1261": [400, "Prompt 超过最大长度，请减少 Prompt 长度后重试。", "Prompt exceeds max length."],
  "1113": [429, "您的账户已欠费，请充值后重试。", "Insufficient balance or no resource package. Please recharge."],
  "1302": [429, "您当前使用该API的并发数过高，请降低并发，或联系客服增加限额。", "Rate limit reached for requests"],
  "1303": [
    429,
    "您当前使用该API的频率过高，请降低频率，或联系客服增加限额。",
    "High frequency usage of this API, please reduce calls.",
  ],
  "1305": [429, "当前API请求过多，请稍后重试。", "The service may be temporarily overloaded, please try again later."],
  "1308": [429, "已达到使用上限，您的限额将在稍后重置。", "Usage limit reached, your limit will reset later."],
  "500": [500, "服务器内部错误，请稍后重试。", "Internal server error, please try again later."],
  "1230": [500, "API 调用流程出错。", "API call process error."],
  "1234": [500, "网络错误，错误id：sim，请联系客服。", "Network error, please contact customer service."],
};

export function errorStatus(code: string): number {
  return ERRORS[code]?.[0] ?? 400;
}

export function errorMessage(code: string, en = false): string {
  const known = ERRORS[code];
  if (!known) return en ? `Simulated error ${code}` : `模拟错误 ${code}`;
  return en ? known[2] : known[1];
}

export function errorBody(code: string, message: string): string {
  return JSON.stringify({ error: { code, message } });
}

const JSON_TYPE = "application/json; charset=UTF-8";
const utf8 = new TextEncoder();

/** A JSON response with an explicit Content-Length, so node clients see a plain (unchunked) body. */
export function jsonResponse(body: unknown, status = 200): Response {
  const bytes = utf8.encode(typeof body === "string" ? body : JSON.stringify(body));
  return new Response(bytes, {
    status,
    headers: { "Content-Type": JSON_TYPE, "Content-Length": String(bytes.byteLength) },
  });
}

export type ErrorOptions = { en?: boolean; status?: number; message?: string };

export function glmError(code: string, opts: ErrorOptions = {}): Response {
  const message = opts.message ?? errorMessage(code, opts.en);
  return jsonResponse(errorBody(code, message), opts.status ?? errorStatus(code));
}
