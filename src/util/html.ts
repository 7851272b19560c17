// Small pieces of the self-contained HTML pages (compare, eval, report): escaping, numbers as
// percentages, and images inlined as data URIs so a page is one file.
import { readFileSync } from 'node:fs';

/** Text into HTML (element content and quoted attributes): the five markup characters as numeric references. */
export const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** 0.873 -> "87.3%". */
export const percent = (x: number): string => `${(x * 100).toFixed(1)}%`;

/** A PNG file as a data: URI for an <img src>. */
export const pngDataUri = (file: string): string => `data:image/png;base64,${readFileSync(file).toString('base64')}`;
