// The authenticated mode with a bad `?token=` on the URL (`io(url + '?token=...')`, the other
// way the spec lets a client present its token): the app's `connect_error` handler should
// see `data.code` "UNAUTHORIZED", as it does for a bad token in `auth`.

import { checkEq, io, once } from "../lib.mjs";

export async function run([url]) {
  const eve = io(`${url}?token=not.a.jwt`, { reconnection: false });
  const [refused] = await once(eve, "connect_error");
  const seen = `${refused.message}, ${JSON.stringify(refused.description)}`;
  checkEq(refused.data?.code, "UNAUTHORIZED", `a bad ?token=: connect_error (${seen})`);
  eve.disconnect();
}
