/**
 * Port names from /etc/services, as getservbyname(name, "tcp") finds them.
 * The file is read once, the first time a name (not a number) is looked up.
 */

let table: Map<string, number> | null = null;

/** Parses services(5) text into name/alias -> TCP port (first entry wins). */
export function parseServices(text: string): Map<string, number> {
  const map = new Map<string, number>();
  for (const raw of text.split("\n")) {
    const hash = raw.indexOf("#");
    const line = hash >= 0 ? raw.slice(0, hash) : raw;
    const words = line.split(/[ \t]+/).filter((w) => w !== "");
    if (words.length < 2) continue;
    const m = /^(\d+)\/(\w+)$/.exec(words[1]);
    if (!m || m[2].toLowerCase() !== "tcp") continue;
    const port = Number(m[1]);
    if (port > 65535) continue;
    for (const name of [words[0], ...words.slice(2)]) {
      if (!map.has(name)) map.set(name, port);
    }
  }
  return map;
}

/**
 * The TCP port named `name` in /etc/services (or `file`), or null. The
 * default file is read once and remembered.
 */
export function servicePort(name: string, file?: string): number | null {
  if (file !== undefined) {
    try {
      return parseServices(Deno.readTextFileSync(file)).get(name) ?? null;
    } catch {
      // A file we cannot read names no service, as getservbyname finds none (the caller
      // reports "unable to figure out port number").
      return null;
    }
  }
  if (table === null) {
    try {
      table = parseServices(Deno.readTextFileSync("/etc/services"));
    } catch {
      // As above: no readable /etc/services, no service names (numeric ports still work).
      table = new Map();
    }
  }
  return table.get(name) ?? null;
}

/**
 * DJB's port argument: all decimal digits (including the empty string, which
 * is 0) is a number taken modulo 65536 as a uint16 would be; anything else is
 * a service name (null when unknown).
 */
export function parsePort(x: string, file?: string): number | null {
  if (/^\d*$/.test(x)) {
    let n = 0;
    for (const c of x) n = (n * 10 + (c.charCodeAt(0) - 48)) % 65536;
    return n;
  }
  return servicePort(x, file);
}
