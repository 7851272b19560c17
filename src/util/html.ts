// Text into HTML (element content and double- or single-quoted attributes): the five characters
// that could end or open markup become numeric character references.
export const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
