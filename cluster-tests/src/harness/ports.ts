// Free TCP ports for test processes. Each port is found by binding port 0 on the loopback address and
// then passed to the process explicitly, so a restarted process comes back on the same address.
import { createServer, type Server } from "node:net";

/**
 * Returns `count` distinct ports that were free a moment ago. All probe sockets are held open until
 * every port is chosen, so one call never returns the same port twice.
 */
export async function findFreePorts(count: number, host = "127.0.0.1"): Promise<number[]> {
  const servers: Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      ports.push(await listen(server, host, 0));
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

function listen(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port, host, exclusive: true }, () => {
      server.off("error", reject);
      const address = server.address();
      if (address === null || typeof address === "string") reject(new Error(`no TCP address after binding ${host}:${port}`));
      else resolve(address.port);
    });
  });
}
