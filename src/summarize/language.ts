// Which language the summary is written in. "auto" means the language of the text, detected once on the
// whole text (not per piece), so every step of a long summary agrees even when one piece quotes another
// language. Detection is by script, plus common function words to recognise English among Latin scripts.

export interface Target {
  /** BCP 47-style code when known ("zh", "en", "zh-TW" …), or null: "the document's own language". */
  code: string | null;
  /** The language's name for an English prompt, e.g. "Simplified Chinese". */
  english: string;
  /** Chinese targets get Chinese prompts: GLM follows a prompt's own language most reliably. */
  chinese: boolean;
  traditional: boolean;
  /** Detected from the text rather than asked for. */
  auto: boolean;
}

const NAMES: Record<string, string> = {
  zh: "Simplified Chinese",
  "zh-cn": "Simplified Chinese",
  "zh-hans": "Simplified Chinese",
  "zh-sg": "Simplified Chinese",
  "zh-tw": "Traditional Chinese",
  "zh-hant": "Traditional Chinese",
  "zh-hk": "Traditional Chinese",
  "zh-mo": "Traditional Chinese",
  en: "English",
  ja: "Japanese",
  ko: "Korean",
  fr: "French",
  de: "German",
  es: "Spanish",
  pt: "Portuguese",
  it: "Italian",
  ru: "Russian",
  ar: "Arabic",
  vi: "Vietnamese",
  th: "Thai",
  id: "Indonesian",
  ms: "Malay",
  nl: "Dutch",
  pl: "Polish",
  tr: "Turkish",
  uk: "Ukrainian",
  hi: "Hindi",
  he: "Hebrew",
  sv: "Swedish",
};

const SAMPLE_CHARS = 30_000;
const EN_WORDS = new Set([
  "the",
  "and",
  "of",
  "to",
  "in",
  "is",
  "that",
  "for",
  "it",
  "with",
  "as",
  "was",
  "on",
  "are",
  "this",
  "be",
]);

/** Three slices (start, middle, end) of a long text: enough to judge its language cheaply. */
function sample(text: string): string {
  if (text.length <= SAMPLE_CHARS) return text;
  const part = SAMPLE_CHARS / 3;
  const mid = Math.floor(text.length / 2 - part / 2);
  return text.slice(0, part) + text.slice(mid, mid + part) + text.slice(text.length - part);
}

/** The dominant language of a text, or null when it is not one we can name with confidence. */
export function detectLanguage(text: string): string | null {
  const s = sample(text);
  let han = 0,
    kana = 0,
    hangul = 0,
    latin = 0,
    cyrillic = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c >= 0x4e00 && c <= 0x9fff) || (c >= 0x3400 && c <= 0x4dbf)) han++;
    else if (c >= 0x3040 && c <= 0x30ff) kana++;
    else if (c >= 0xac00 && c <= 0xd7af) hangul++;
    else if ((c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0xc0 && c <= 0x24f)) latin++;
    else if (c >= 0x400 && c <= 0x4ff) cyrillic++;
  }
  const letters = han + kana + hangul + latin + cyrillic;
  if (letters === 0) return null;
  // Japanese mixes Han with kana; Chinese has (almost) none.
  if (kana >= 0.1 * (han + kana) && kana > 20) return "ja";
  if (hangul >= 0.3 * letters) return "ko";
  // A Han character carries a word's worth of meaning; a fifth of the letters being Han is a Chinese text.
  if (han >= 0.2 * letters) return "zh";
  if (cyrillic >= 0.5 * letters) return "ru";
  if (latin >= 0.5 * letters) {
    const words = s.toLowerCase().match(/[a-z]+/g) ?? [];
    let common = 0;
    for (const w of words) if (EN_WORDS.has(w)) common++;
    if (words.length > 0 && common / words.length >= 0.08) return "en";
  }
  return null;
}

/** Resolves the request's `language` ("auto" or a tag) against the text. */
export function resolveTarget(language: string | undefined, text: string): Target {
  const auto = !language || language.toLowerCase() === "auto";
  const code = auto ? detectLanguage(text) : language;
  if (code === null)
    return { code: null, english: "the language the document is written in", chinese: false, traditional: false, auto };
  const key = code.toLowerCase();
  const base = key.split("-")[0]!;
  const english = NAMES[key] ?? NAMES[base] ?? `the language with tag "${code}"`;
  const chinese = base === "zh";
  return { code, english, chinese, traditional: chinese && english === "Traditional Chinese", auto };
}
