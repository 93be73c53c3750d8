import assert from "node:assert/strict";
import { idOf } from "../../lib/process/ids.ts";

Deno.test("idOf: numbers as numbers, names from passwd/group files, anything else null", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const passwd = `${dir}/passwd`;
    const group = `${dir}/group`;
    await Deno.writeTextFile(
      passwd,
      "root:x:0:0:root:/root:/bin/sh\nqmaild:x:1002:1003::/var/qmail:/bin/false\nbad:x:zz:1::/:/bin/false\n",
    );
    await Deno.writeTextFile(group, "root:x:0:\nnofiles:x:1004:\n");
    const files = { passwd, group };
    assert.equal(idOf("0", "user", files), 0);
    assert.equal(idOf("1234", "user", files), 1234);
    assert.equal(idOf("qmaild", "user", files), 1002);
    assert.equal(idOf("nofiles", "group", files), 1004);
    assert.equal(idOf("qmaild", "group", files), null, "a user name is not a group name");
    assert.equal(idOf("nosuch", "user", files), null);
    assert.equal(idOf("bad", "user", files), null, "a malformed id field is not an id");
    assert.equal(idOf("", "user", files), null);
    assert.equal(idOf("-1", "user", files), null);
    assert.equal(idOf("99999999999", "user", files), null);
    assert.equal(idOf("root", "user", { passwd: `${dir}/missing` }), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
