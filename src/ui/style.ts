// Minimal ANSI styling; every caller goes through a Style so NO_COLOR and pipes get plain text.
const codes = { bold: [1, 22], dim: [2, 22], red: [31, 39], green: [32, 39], yellow: [33, 39], cyan: [36, 39] } as const;
export type StyleName = keyof typeof codes;
export type Style = Record<StyleName, (text: string) => string>;

export function makeStyle(enabled: boolean): Style {
  const entries = Object.entries(codes).map(([name, [open, close]]) => [
    name,
    enabled ? (text: string) => `\u001b[${open}m${text}\u001b[${close}m` : (text: string) => text,
  ]);
  return Object.fromEntries(entries) as Style;
}
