/**
 * Certificates made by the openssl command for the certificate tests: any
 * subject (also through a config file, for bytes -subj cannot carry), any
 * extensions, self-signed or issued by another made certificate.
 */
export class CertMaker {
  #serial = 1000;
  constructor(readonly dir: string) {}

  async openssl(args: string[], stdin?: string): Promise<string> {
    const child = new Deno.Command("openssl", {
      args,
      cwd: this.dir,
      stdin: stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    if (stdin !== undefined) {
      const w = child.stdin.getWriter();
      await w.write(new TextEncoder().encode(stdin));
      await w.close();
    }
    const r = await child.output();
    const out = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
    if (!r.success) throw new Error(`openssl ${args.join(" ")}: ${out}`);
    return out;
  }

  /**
   * Makes NAME.pem and NAME.key. subj is a -subj string, or {dn: lines} for
   * a [dn] section (values may hold any byte but NUL and newline; "\n" in
   * them is a newline); issuer "self" or a made name; ext: extension lines.
   */
  async make(
    name: string,
    subj: string | { dn: string[]; utf8?: boolean; mask?: string; oids?: string[] },
    issuer: string,
    ext: string[],
    days = 3,
  ): Promise<string> {
    const conf = `${this.dir}/${name}.cnf`;
    let text = typeof subj !== "string" && subj.oids
      ? `oid_section=oids\n[oids]\n${subj.oids.join("\n")}\n`
      : "";
    text += "[req]\ndistinguished_name=dn\nprompt=no\n";
    if (typeof subj !== "string" && subj.mask) text += `string_mask=${subj.mask}\n`;
    text += typeof subj === "string" ? "[dn]\nCN=unused\n" : `[dn]\n${subj.dn.join("\n")}\n`;
    text += `[ext]\n${ext.join("\n")}\n`;
    await Deno.writeFile(conf, latin1(text));
    const subjArgs = typeof subj === "string" ? ["-subj", subj, "-multivalue-rdn"] : [];
    const utf8 = typeof subj !== "string" && subj.utf8 ? ["-utf8"] : [];
    const key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    if (issuer === "self") {
      await this.openssl([
        "req",
        "-x509",
        "-config",
        conf,
        ...key,
        "-keyout",
        `${name}.key`,
        "-out",
        `${name}.pem`,
        "-days",
        String(days),
        ...subjArgs,
        ...utf8,
        ...(ext.length ? ["-extensions", "ext"] : []),
      ]);
    } else {
      await this.openssl([
        "req",
        "-new",
        "-config",
        conf,
        ...key,
        "-keyout",
        `${name}.key`,
        "-out",
        `${name}.csr`,
        ...subjArgs,
        ...utf8,
      ]);
      await this.openssl([
        "x509",
        "-req",
        "-in",
        `${name}.csr`,
        "-CA",
        `${issuer}.pem`,
        "-CAkey",
        `${issuer}.key`,
        "-set_serial",
        String(++this.#serial),
        "-out",
        `${name}.pem`,
        "-days",
        String(days),
        ...(ext.length ? ["-extfile", conf, "-extensions", "ext"] : []),
      ]);
    }
    return `${this.dir}/${name}.pem`;
  }

  path(name: string): string {
    return `${this.dir}/${name}.pem`;
  }

  async der(name: string): Promise<Uint8Array> {
    const pem = await Deno.readTextFile(this.path(name));
    const b64 = pem.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, "");
    return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  }
}

function latin1(s: string): Uint8Array {
  return Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff);
}
