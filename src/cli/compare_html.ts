// The self-contained comparison page: one row per prompt and seed, one column per model, images
// inlined as data URIs so the file can be mailed or attached as it is. A small script records how
// many images decoded (body[data-images-loaded]) so a headless browser can check the page.
import { escapeHtml as escape, pngDataUri } from '../util/html.js';

export interface CompareColumn {
  label: string;
  /** where the UNet came from ('' for the pipeline's own) */
  source: string;
  files: string[];
}


export function compareHtml(title: string, rows: { prompt: string; seed: number }[], columns: CompareColumn[], settings: Record<string, string>): string {
  const head = columns.map((c) => `<th>${escape(c.label)}${c.source ? `<br><small>${escape(c.source)}</small>` : ''}</th>`).join('');
  const body = rows.map((r, i) => {
    const cells = columns.map((c) => `<td><img alt="${escape(`${c.label}: ${r.prompt} (seed ${r.seed})`)}" src="${pngDataUri(c.files[i]!)}"></td>`).join('');
    return `<tr><th class="prompt">${escape(r.prompt)}<br><small>seed ${r.seed}</small></th>${cells}</tr>`;
  }).join('\n');
  const meta = Object.entries(settings).map(([k, v]) => `<code>${escape(k)}=${escape(v)}</code>`).join(' ');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
table { border-collapse: collapse; }
th, td { padding: 4px; vertical-align: top; }
th.prompt { text-align: left; max-width: 18rem; font-weight: normal; }
thead th { position: sticky; top: 0; background: #fff; }
img { display: block; max-width: 320px; height: auto; image-rendering: auto; }
code { background: #f3f3f3; padding: 1px 4px; margin-right: 4px; }
</style></head>
<body>
<h1>${escape(title)}</h1>
<p>${meta}</p>
<table><thead><tr><th>prompt</th>${head}</tr></thead>
<tbody>
${body}
</tbody></table>
<script>
addEventListener('load', () => {
  const imgs = [...document.images];
  document.body.dataset.imagesLoaded = imgs.filter((i) => i.complete && i.naturalWidth > 0).length + '/' + imgs.length;
});
</script>
</body></html>
`;
}
