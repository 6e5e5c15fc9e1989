// host:port parsing shared by every flag that takes an address.

export interface HostPort {
  host: string;
  port: number;
}

/** Parses "host:port" (port 0..65535; IPv6 as "[::1]:7401"). Throws RangeError with a readable reason. */
export function parseHostPort(text: string): HostPort {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(text.trim());
  if (m === null) throw new RangeError(`"${text}" is not host:port`);
  const port = Number(m[2]);
  if (port > 65535) throw new RangeError(`port ${port} in "${text}" is above 65535`);
  return { host: m[1]!.replace(/^\[(.*)\]$/, "$1"), port };
}

export function formatHostPort(a: HostPort): string {
  return a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
