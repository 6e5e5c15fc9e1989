// `npm start`: runs a local Runnel cluster in the foreground with the DESIGN.md defaults: the
// controller on 127.0.0.1:7400 (HTTP 7480) and brokers 1..N on 127.0.0.1:740N (HTTP 748N), data under
// <repo>/data (or --data-dir). Prints every process's logs readably, one line when all brokers are
// registered, and on Ctrl-C or SIGTERM stops the brokers first (controlled shutdown), then the controller.
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { ControllerServiceClient, type DescribeClusterResponse } from "@runnel/proto";
import { execa, type ResultPromise } from "execa";
import { formatLogLine } from "./log-format.js";

/** <repo>/scripts/dist/start.js (or src/start.ts under tsx) -> <repo>. */
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const host = "127.0.0.1";
const controllerGrpcPort = 7400;
const controllerHttpPort = 7480;
const brokerGrpcPortBase = 7400;
const brokerHttpPortBase = 7480;
const minBrokers = 1;
/** Broker N listens on 740N: one digit keeps the port layout of DESIGN.md. */
const maxBrokers = 9;
const defaultBrokers = 3;

/** From start to every broker registered and alive. */
const clusterReadyTimeoutMs = 60_000;
/** Between DescribeCluster polls while waiting for the cluster to be ready. */
const readyPollIntervalMs = 200;
/** Deadline of one DescribeCluster call. */
const describeTimeoutMs = 2_000;
/** Brokers get this long after SIGTERM (controlled shutdown moves their leaderships away first). */
const brokerStopTimeoutMs = 30_000;
const controllerStopTimeoutMs = 10_000;
const logLevels = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

interface Child {
  name: string;
  subprocess: ResultPromise;
  exited: boolean;
  exit: Promise<string>;
}

const defaultDataDir = join(repoRoot, "data");

const usage = `Usage: npm start -- [--brokers N] [--data-dir DIR] [--clean] [--log-level LEVEL]
  --brokers N        number of brokers, ${minBrokers}..${maxBrokers} (env RUNNEL_BROKERS; default ${defaultBrokers})
  --data-dir DIR     where the controller and brokers keep their data (default ${defaultDataDir})
  --clean            delete the data directory first
  --log-level LEVEL  ${logLevels.join(", ")} (default info)`;

function fail(message: string): never {
  process.stderr.write(`runnel start: ${message}\n`);
  process.exit(1);
}

function parseOptions(): { brokers: number; dataDir: string; clean: boolean; logLevel: string } {
  let values: { brokers?: string; "data-dir"?: string; clean?: boolean; "log-level"?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: {
        brokers: { type: "string" },
        "data-dir": { type: "string" },
        clean: { type: "boolean" },
        "log-level": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    fail(`${err instanceof Error ? err.message : String(err)}\n${usage}`);
  }
  if (values.help === true) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  const brokersText = values.brokers ?? process.env["RUNNEL_BROKERS"] ?? String(defaultBrokers);
  const brokers = Number(brokersText);
  if (!/^\d+$/.test(brokersText) || brokers < minBrokers || brokers > maxBrokers) {
    fail(`--brokers (or RUNNEL_BROKERS) must be an integer in ${minBrokers}..${maxBrokers}, not "${brokersText}"`);
  }
  const logLevel = values["log-level"] ?? "info";
  if (!logLevels.includes(logLevel)) fail(`--log-level must be one of ${logLevels.join(", ")}, not "${logLevel}"`);
  const dataDirText = values["data-dir"];
  if (dataDirText !== undefined && dataDirText.trim() === "") fail("--data-dir must name a directory");
  return { brokers, dataDir: dataDirText === undefined ? defaultDataDir : resolve(dataDirText), clean: values.clean === true, logLevel };
}

function portInUse(port: number): Promise<string | undefined> {
  return new Promise((resolvePort) => {
    const server = createServer();
    server.once("error", (err: NodeJS.ErrnoException) => resolvePort(err.code ?? String(err)));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolvePort(undefined)));
  });
}

function describeCluster(client: ControllerServiceClient): Promise<DescribeClusterResponse> {
  return new Promise((resolveCall, reject) => {
    client.describeCluster({}, new grpc.Metadata(), { deadline: new Date(Date.now() + describeTimeoutMs) }, (err, response) =>
      err === null ? resolveCall(response) : reject(err),
    );
  });
}

async function main(): Promise<void> {
  const options = parseOptions();
  const brokerIds = Array.from({ length: options.brokers }, (_, i) => i + 1);
  const controllerAddress = `${host}:${controllerGrpcPort}`;
  const brokerAddress = (id: number) => `${host}:${brokerGrpcPortBase + id}`;

  for (const entry of ["controller/dist/main.js", "broker/dist/main.js"]) {
    if (!existsSync(join(repoRoot, entry))) fail(`${entry} is missing: run \`npm run build\` first (\`npm start\` does)`);
  }
  const ports: [number, string][] = [
    [controllerGrpcPort, "controller gRPC"],
    [controllerHttpPort, "controller HTTP"],
    ...brokerIds.flatMap((id): [number, string][] => [
      [brokerGrpcPortBase + id, `broker-${id} gRPC`],
      [brokerHttpPortBase + id, `broker-${id} HTTP`],
    ]),
  ];
  for (const [port, what] of ports) {
    const problem = await portInUse(port);
    if (problem !== undefined) {
      fail(`port ${port} (${what}) on ${host} is not available (${problem}); is another Runnel cluster running? Stop it or free the port.`);
    }
  }

  const dataDir = options.dataDir;
  if (options.clean) {
    rmSync(dataDir, { recursive: true, force: true });
    process.stdout.write(`runnel start: deleted ${dataDir}\n`);
  }

  const color = process.stdout.isTTY === true && process.env["NO_COLOR"] === undefined;
  const nameWidth = "controller".length;
  const children: Child[] = [];
  let shuttingDown = false;

  // Children run in their own process group, so a Ctrl-C in the terminal reaches only this script,
  // which then stops them in order (brokers first). If this script dies anyway, the exit handler
  // SIGKILLs whatever is left.
  process.on("exit", () => {
    for (const child of children) {
      if (!child.exited && child.subprocess.pid !== undefined) {
        try {
          process.kill(child.subprocess.pid, "SIGKILL");
        } catch {
          // Already gone.
        }
      }
    }
  });

  const spawnChild = (name: string, entry: string, args: string[]): Child => {
    const subprocess = execa(process.execPath, [join(repoRoot, entry), ...args], {
      cwd: repoRoot,
      stdin: "ignore",
      detached: true,
      cleanup: false,
      buffer: false,
      reject: false,
      forceKillAfterDelay: false,
    });
    for (const stream of [subprocess.stdout, subprocess.stderr]) {
      createInterface({ input: stream, crlfDelay: Infinity }).on("line", (line) => {
        process.stdout.write(`${formatLogLine(name, line, { nameWidth, color })}\n`);
      });
    }
    const child: Child = {
      name,
      subprocess,
      exited: false,
      exit: subprocess.then((result) => {
        child.exited = true;
        return result.signal !== undefined ? `signal ${result.signal}` : `exit code ${result.exitCode ?? "unknown"}`;
      }),
    };
    children.push(child);
    void child.exit.then((how) => {
      if (!shuttingDown) {
        process.stderr.write(`runnel start: ${name} exited unexpectedly (${how}); stopping the rest\n`);
        void shutdown(1);
      }
    });
    return child;
  };

  const stopChild = async (child: Child, timeoutMs: number): Promise<void> => {
    if (child.exited || child.subprocess.pid === undefined) return;
    try {
      process.kill(child.subprocess.pid, "SIGTERM");
    } catch {
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      child.exit.then(() => false),
      new Promise<boolean>((resolveTimeout) => {
        timer = setTimeout(() => resolveTimeout(true), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      process.stderr.write(`runnel start: ${child.name} did not stop within ${timeoutMs} ms of SIGTERM; killing it\n`);
      try {
        process.kill(child.subprocess.pid, "SIGKILL");
      } catch {
        // Exited meanwhile.
      }
      await child.exit;
    }
  };

  const client = new ControllerServiceClient(controllerAddress, grpc.credentials.createInsecure(), {
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1000,
  });

  const shutdown = async (exitCode: number): Promise<void> => {
    if (shuttingDown) return;
    shuttingDown = true;
    process.stdout.write("runnel start: stopping brokers (controlled shutdown), then the controller\n");
    const [controller, ...brokers] = children;
    await Promise.all(brokers.map((b) => stopChild(b, brokerStopTimeoutMs)));
    if (controller !== undefined) await stopChild(controller, controllerStopTimeoutMs);
    client.close();
    process.stdout.write("runnel start: stopped\n");
    process.exit(exitCode);
  };
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(signal, () => void shutdown(0));
  }

  const controllerData = join(dataDir, "controller");
  mkdirSync(controllerData, { recursive: true });
  spawnChild("controller", "controller/dist/main.js", [
    "--listen", controllerAddress,
    "--http", `${host}:${controllerHttpPort}`,
    "--data-dir", controllerData,
    "--log-level", options.logLevel,
  ]);
  for (const id of brokerIds) {
    const brokerData = join(dataDir, `broker-${id}`);
    mkdirSync(brokerData, { recursive: true });
    spawnChild(`broker-${id}`, "broker/dist/main.js", [
      "--id", String(id),
      "--listen", brokerAddress(id),
      "--http", `${host}:${brokerHttpPortBase + id}`,
      "--data-dir", brokerData,
      "--controller", controllerAddress,
      "--log-level", options.logLevel,
    ]);
  }

  // Brokers retry registration until the controller answers, so they can start together with it.
  const deadline = Date.now() + clusterReadyTimeoutMs;
  let alive: number[] = [];
  let lastError = "";
  while (!shuttingDown) {
    try {
      const described = await describeCluster(client);
      alive = described.brokers.filter((b) => b.alive).map((b) => b.endpoint?.brokerId ?? -1);
      lastError = "";
      if (brokerIds.every((id) => alive.includes(id))) {
        process.stdout.write(
          `Runnel cluster ready: controller ${controllerAddress}, brokers ${brokerIds.map(brokerAddress).join(",")}, data in ${dataDir}\n`,
        );
        client.close();
        return;
      }
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() >= deadline) {
      const missing = brokerIds.filter((id) => !alive.includes(id));
      process.stderr.write(
        `runnel start: the cluster was not ready within ${clusterReadyTimeoutMs} ms: ` +
          `${missing.length > 0 ? `broker(s) ${missing.join(", ")} not registered` : "no answer"}` +
          `${lastError === "" ? "" : ` (last DescribeCluster error: ${lastError})`}\n`,
      );
      await shutdown(1);
      return;
    }
    await new Promise((r) => setTimeout(r, readyPollIntervalMs));
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`runnel start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
