// What a request id may be. It is echoed as the x-request-id response header and forwarded to GLM, so it
// must be a valid header value: printable ASCII without surrounding spaces, at most 128 characters.
export const REQUEST_ID_RE = /^[\x21-\x7e](?:[\x20-\x7e]{0,126}[\x21-\x7e])?$/;
