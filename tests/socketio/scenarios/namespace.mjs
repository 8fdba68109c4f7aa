// Another namespace on the connection the main one already uses: `io(url)` then
// `io(url + '/admin')` share one Manager (socket.io-client multiplexes by default), so the
// server gets `40/admin,` on an Engine.IO session whose `/` is connected. A Socket.IO
// server answers CONNECT_ERROR for a namespace it does not serve, and the main socket
// carries on.

import { ask, check, checkEq, closeAll, connect, io, join, once, sessionName } from "../lib.mjs";

export async function run([url]) {
  const ada = await connect(url, "ada");
  await join(ada, sessionName("namespace"), { role: "leader" });
  const admin = io(`${url}/admin`);
  check(admin.io === ada.socket.io, "the /admin socket shares the main socket's Manager");
  const [error] = await once(admin, "connect_error");
  check(/Invalid namespace/.test(error.message), `connect_error message: ${error.message}`);
  checkEq(error.data?.code, "INVALID_NAMESPACE", "connect_error data.code");
  admin.disconnect();
  const fine = await ask(ada, "set_tempo", { tempo: 122 });
  checkEq(fine.transport?.tempo, 122, "the main socket still works");
  closeAll(ada);
}
