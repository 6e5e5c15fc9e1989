// Which local process opened a loopback TCP connection. Every process here connects from 127.0.0.1,
// so the address says nothing; but the kernel knows which socket inode holds the client end of the
// connection (/proc/net/tcp) and which process holds that inode (/proc/<pid>/fd). That lets one proxy
// port tell "broker 2 fetching" from "a client producing", without network namespaces.
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

/**
 * The inode of the socket whose local end is 127.0.0.1:`localPort` and remote end is port `remotePort`
 * (the client end of a connection the proxy accepted), or undefined if the kernel does not list it.
 */
export function socketInode(localPort: number, remotePort: number, table = readProcNetTcp()): number | undefined {
  const local = `0100007F:${hexPort(localPort)}`;
  const remote = `:${hexPort(remotePort)}`;
  for (const line of table.split("\n")) {
    const fields = line.trim().split(/\s+/);
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
    if (fields[1] === local && fields[2]?.endsWith(remote)) {
      const inode = Number(fields[9]);
      return Number.isFinite(inode) && inode > 0 ? inode : undefined;
    }
  }
  return undefined;
}

/** Whether process `pid` holds socket `inode` among its open files. */
export function pidHoldsSocket(pid: number, inode: number): boolean {
  const wanted = `socket:[${inode}]`;
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false; // Gone, or not ours to read.
  }
  for (const fd of fds) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) === wanted) return true;
    } catch {
      // Closed between readdir and readlink.
    }
  }
  return false;
}

/**
 * Which of `candidates` (name -> pid) opened the connection from 127.0.0.1:`clientPort` to
 * `serverPort`; undefined when none did (a client, the harness, or /proc is unavailable).
 */
export function ownerOfConnection<K>(clientPort: number, serverPort: number, candidates: ReadonlyArray<readonly [K, number]>): K | undefined {
  let table: string;
  try {
    table = readProcNetTcp();
  } catch {
    return undefined;
  }
  const inode = socketInode(clientPort, serverPort, table);
  if (inode === undefined) return undefined;
  for (const [name, pid] of candidates) if (pidHoldsSocket(pid, inode)) return name;
  return undefined;
}

function readProcNetTcp(): string {
  return readFileSync("/proc/net/tcp", "utf8");
}

function hexPort(port: number): string {
  return port.toString(16).toUpperCase().padStart(4, "0");
}
