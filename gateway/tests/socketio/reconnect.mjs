// Driven by tests/socketio.rs: connects with socket.io-client's default reconnection, reports
// each step on stdout, and after the gateway restarts proves the new session works by a
// chat message round trip. Exits by itself after at most 20 s.
import { io } from "socket.io-client";

const socket = io(process.env.GATEWAY_URL, {
  transports: ["websocket"],
  reconnectionDelay: 100,
  reconnectionDelayMax: 200,
});
const give_up = setTimeout(() => {
  console.log("timeout");
  process.exit(1);
}, 20000);
let sessions = 0;
socket.on("connect", () => {
  sessions += 1;
  if (sessions === 1) {
    console.log(`connected ${socket.id}`);
    return;
  }
  console.log(`reconnected ${socket.id}`);
  socket.on("chat message", (msg) => {
    if (msg === "after restart") {
      console.log("echo");
      clearTimeout(give_up);
      socket.disconnect();
    }
  });
  socket.emit("chat message", "after restart");
});
socket.on("disconnect", (reason) => console.log(`disconnected ${reason}`));
