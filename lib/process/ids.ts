/**
 * User and group arguments (-u, -g) as numbers or names. DJB's tcpserver
 * takes numbers only and reads `-u qmaild` as uid 0, which silently keeps
 * root; here a name is looked up in /etc/passwd or /etc/group (once, at
 * start, as ipsvd's tcpsvd does) and anything that is neither a number nor a
 * known name is refused.
 */

/** Where the names are looked up (tests point these at files of their own). */
export interface IdFiles {
  /** The passwd file (default /etc/passwd). */
  passwd?: string;
  /** The group file (default /etc/group). */
  group?: string;
}

/** The id of `name` in a passwd- or group-format file (field 3), or null. */
function lookup(file: string, name: string): number | null {
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch {
    // An unreadable passwd/group file knows no names: the caller refuses the value.
    return null;
  }
  for (const line of text.split("\n")) {
    const fields = line.split(":");
    if (fields.length >= 3 && fields[0] === name && /^\d+$/.test(fields[2])) {
      return Number(fields[2]);
    }
  }
  return null;
}

/**
 * The numeric id that `value` names: digits as a number, otherwise a user
 * (kind "user", /etc/passwd) or group (kind "group", /etc/group) name.
 * Returns null when it is neither.
 */
export function idOf(value: string, kind: "user" | "group", files: IdFiles = {}): number | null {
  if (/^\d+$/.test(value)) {
    const n = Number(value);
    return n <= 0xffffffff ? n : null;
  }
  if (value === "" || value.includes(":") || value.includes("\n")) return null;
  return kind === "user"
    ? lookup(files.passwd ?? "/etc/passwd", value)
    : lookup(files.group ?? "/etc/group", value);
}
