// The HTTP side of every process: /healthz (the process is alive), /readyz (it can serve: registered
// and caught up), /metrics (Prometheus text, supplied by the process).
import { createServer, type Server } from "node:http";
import { metricsContentType } from "./metrics.js";

export interface HttpEndpoints {
  /** Why the process is not ready, or undefined when it is. */
  notReadyReason: () => string | undefined;
  /** Prometheus exposition text (a process's ProcessMetrics.text()). */
  metrics?: () => Promise<string>;
}

export function startHttpServer(host: string, port: number, endpoints: HttpEndpoints): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET") {
      res.writeHead(405, { "content-type": "text/plain" }).end("only GET\n");
    } else if (path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    } else if (path === "/readyz") {
      const reason = endpoints.notReadyReason();
      if (reason === undefined) res.writeHead(200, { "content-type": "text/plain" }).end("ready\n");
      else res.writeHead(503, { "content-type": "text/plain" }).end(`not ready: ${reason}\n`);
    } else if (path === "/metrics" && endpoints.metrics !== undefined) {
      endpoints.metrics().then(
        (text) => res.writeHead(200, { "content-type": metricsContentType }).end(text),
        (err: unknown) => res.writeHead(500, { "content-type": "text/plain" }).end(`${String(err)}\n`),
      );
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    }
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  server.maxConnections = 256;
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve(server);
    });
  });
}
