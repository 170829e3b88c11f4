// SSH wire encoding (RFC 4251 §5): uint32, uint64, string, mpint, name-list. Used for key blobs,
// certificates and the one authentication packet ssh2 cannot build for certificates.

export class SshWriter {
  readonly #parts: Buffer[] = [];

  byte(v: number): this {
    this.#parts.push(Buffer.from([v & 0xff]));
    return this;
  }

  bool(v: boolean): this {
    return this.byte(v ? 1 : 0);
  }

  uint32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v >>> 0);
    this.#parts.push(b);
    return this;
  }

  uint64(v: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt.asUintN(64, v));
    this.#parts.push(b);
    return this;
  }

  string(v: Buffer | string): this {
    const data = typeof v === "string" ? Buffer.from(v, "utf8") : v;
    this.uint32(data.length);
    this.#parts.push(data);
    return this;
  }

  /** Two's complement, big-endian, minimal length; positive values with the top bit set get a 0x00 prefix. */
  mpint(v: Buffer): this {
    let start = 0;
    while (start < v.length && v[start] === 0) start++;
    let data = v.subarray(start);
    if (data.length > 0 && ((data[0] as number) & 0x80) !== 0) data = Buffer.concat([Buffer.from([0]), data]);
    return this.string(data);
  }

  raw(v: Buffer): this {
    this.#parts.push(v);
    return this;
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.#parts);
  }
}

export class SshFormatError extends Error {}

export class SshReader {
  #pos = 0;
  readonly #buf: Buffer;

  constructor(buf: Buffer) {
    this.#buf = buf;
  }

  get remaining(): number {
    return this.#buf.length - this.#pos;
  }

  #need(n: number): void {
    if (this.#pos + n > this.#buf.length) throw new SshFormatError("truncated SSH data");
  }

  byte(): number {
    this.#need(1);
    return this.#buf[this.#pos++] as number;
  }

  uint32(): number {
    this.#need(4);
    const v = this.#buf.readUInt32BE(this.#pos);
    this.#pos += 4;
    return v;
  }

  uint64(): bigint {
    this.#need(8);
    const v = this.#buf.readBigUInt64BE(this.#pos);
    this.#pos += 8;
    return v;
  }

  string(): Buffer {
    const n = this.uint32();
    this.#need(n);
    const v = this.#buf.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return v;
  }

  text(): string {
    return this.string().toString("utf8");
  }

  /** An mpint as unsigned big-endian bytes (leading zero stripped). */
  mpint(): Buffer {
    const v = this.string();
    let start = 0;
    while (start < v.length - 1 && v[start] === 0) start++;
    return v.subarray(start);
  }

  raw(n: number): Buffer {
    this.#need(n);
    const v = this.#buf.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return v;
  }
}

/** Packs strings back to back, as certificate principals and option lists are encoded. */
export function packStrings(values: readonly (string | Buffer)[]): Buffer {
  const w = new SshWriter();
  for (const v of values) w.string(v);
  return w.toBuffer();
}

export function unpackStrings(buf: Buffer): Buffer[] {
  const r = new SshReader(buf);
  const out: Buffer[] = [];
  while (r.remaining > 0) out.push(r.string());
  return out;
}
